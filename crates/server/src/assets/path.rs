//! From a request's path to a file's key in the asset index.
//!
//! The index holds only files found under the directory when the tenant loaded, so a key
//! can never name anything outside it; paths that try anyway (`..` after decoding, NUL)
//! are refused outright rather than passed on to the guest.

use percent_encoding::percent_decode_str;

/// Why a path was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A `.` or `..` segment, written plainly or percent-encoded.
    DotSegment,
    /// A NUL byte (`%00`).
    Nul,
}

/// The decoded path, or `Ok(None)` for a path that cannot name a file (not UTF-8 once
/// decoded): the guest may still answer it.
pub fn decode(raw: &str) -> Result<Option<String>, Refused> {
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    if bytes.contains(&0) {
        return Err(Refused::Nul);
    }
    let Ok(path) = String::from_utf8(bytes) else {
        return Ok(None);
    };
    // Backslashes count as separators here: some clients and proxies treat them so.
    if path
        .split(['/', '\\'])
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(Refused::DotSegment);
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_encoded_traversal_is_refused() {
        for raw in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a/%2E%2E%2Fsecret",
            "/..%2f..%2fetc/passwd",
            "/a/..\\b",
            "/./index.html",
        ] {
            assert_eq!(decode(raw), Err(Refused::DotSegment), "{raw}");
        }
        assert_eq!(decode("/index.html%00.png"), Err(Refused::Nul));
    }

    #[test]
    fn ordinary_paths_decode() {
        assert_eq!(decode("/a%20b.txt"), Ok(Some("/a b.txt".into())));
        assert_eq!(decode("/..hidden/x"), Ok(Some("/..hidden/x".into())));
        assert_eq!(decode("/%ff"), Ok(None));
    }
}
