//! `x-request-id`: kept when the client (or a proxy in front) sent a sane one, otherwise
//! minted here, so one id follows a request through every log line and the response.

/// The header that carries the id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest client-supplied id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's id if it is 1 to 128 of `[A-Za-z0-9._:-]`, else a new random one.
pub fn request_id(client_sent: Option<&http::HeaderValue>) -> String {
    client_sent
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_valid(id))
        .map_or_else(new_id, str::to_string)
}

fn is_valid(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 128 random bits as 32 hex digits.
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_client_id() {
        let sent = http::HeaderValue::from_static("abc-123.x:y_z");
        assert_eq!(request_id(Some(&sent)), "abc-123.x:y_z");
    }

    #[test]
    fn replaces_an_invalid_or_oversized_id() {
        let spaced = http::HeaderValue::from_static("has space");
        let replaced = request_id(Some(&spaced));
        assert_eq!(replaced.len(), 32);
        assert!(replaced.bytes().all(|b| b.is_ascii_hexdigit()));

        let long = http::HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_ne!(request_id(Some(&long)), "a".repeat(129));
    }

    #[test]
    fn mints_distinct_ids() {
        assert_ne!(request_id(None), request_id(None));
    }
}
