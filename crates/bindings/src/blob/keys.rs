//! What a guest may name and attach: object keys (no `..`, no absolute paths, nothing
//! under outpost's own sidecar prefix), byte ranges and custom metadata.

use object_store::path::Path;
use object_store::{Attribute, Attributes, GetRange};

use super::file::SIDECAR_PREFIX;
use super::{MAX_KEY_BYTES, MAX_METADATA_BYTES};
use crate::generated::outpost::edge::blob::{ByteRange, PutOptions};
use crate::{EdgeError, EdgeResult};

/// Checks a guest's key and makes it a store path.
pub(super) fn object_path(key: &str) -> EdgeResult<Path> {
    let invalid = |why: &str| EdgeError::invalid(format!("the key `{key}` {why}"));
    if key.is_empty() {
        return Err(invalid("is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(EdgeError::limit(
            "blob.key_bytes",
            format!("the key is over {MAX_KEY_BYTES} bytes"),
        ));
    }
    if key.starts_with('/') {
        return Err(invalid("starts with `/`"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(invalid("has an empty segment (`//` or a trailing `/`)")),
            "." | ".." => return Err(invalid("has a `.` or `..` segment")),
            _ => {}
        }
    }
    if key == SIDECAR_PREFIX || key.starts_with(&format!("{SIDECAR_PREFIX}/")) {
        return Err(invalid(&format!(
            "is under `{SIDECAR_PREFIX}/`, which outpost reserves"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("has a control character"));
    }
    Path::parse(key).map_err(|e| invalid(&format!("is not a valid object path: {e}")))
}

/// The guest's range as object_store asks for it.
pub(super) fn get_range(range: ByteRange) -> EdgeResult<GetRange> {
    let empty = || EdgeError::invalid("the range is empty");
    Ok(match range {
        ByteRange::Offset(offset) => GetRange::Offset(offset),
        ByteRange::Bounded((_, 0)) | ByteRange::Suffix(0) => return Err(empty()),
        ByteRange::Bounded((offset, length)) => {
            GetRange::Bounded(offset..offset.saturating_add(length))
        }
        ByteRange::Suffix(length) => GetRange::Suffix(length),
    })
}

/// The content type and custom metadata of an upload, checked.
pub(super) fn attributes(options: &PutOptions) -> EdgeResult<Attributes> {
    let mut total = 0;
    let mut attributes = Attributes::new();
    for (name, value) in &options.metadata {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !token {
            return Err(EdgeError::invalid(format!(
                "metadata name `{name}` must be letters, digits, `-`, `_` or `.`"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(EdgeError::invalid(format!(
                "metadata `{name}` has a control character in its value"
            )));
        }
        total += name.len() + value.len();
        attributes.insert(
            Attribute::Metadata(name.to_lowercase().into()),
            value.clone().into(),
        );
    }
    if total > MAX_METADATA_BYTES {
        return Err(EdgeError::limit(
            "blob.metadata_bytes",
            format!(
                "custom metadata is {total} bytes; it is limited to {MAX_METADATA_BYTES} bytes"
            ),
        ));
    }
    if let Some(content_type) = &options.content_type {
        if content_type.chars().any(char::is_control) {
            return Err(EdgeError::invalid(
                "the content type has a control character",
            ));
        }
        attributes.insert(Attribute::ContentType, content_type.clone().into());
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn refused(key: &str) -> ErrorCode {
        object_path(key)
            .expect_err(key)
            .code()
            .cloned()
            .expect("an error code")
    }

    #[test]
    fn keys_that_escape_or_hide_are_refused() {
        for key in [
            "",
            "/etc/passwd",
            "../up",
            "a/../b",
            "a/./b",
            "a//b",
            "trailing/",
            ".outpost-meta",
            ".outpost-meta/x.json",
            "bell\u{7}",
            "new\nline",
        ] {
            assert!(
                matches!(refused(key), ErrorCode::InvalidArgument(_)),
                "{key:?}"
            );
        }
    }

    #[test]
    fn ordinary_keys_become_paths() {
        for key in [
            "a",
            "photos/2026/cat.jpg",
            "with space",
            "ünïcode",
            "..dots-in-name",
        ] {
            assert_eq!(object_path(key).expect(key).as_ref(), key);
        }
    }

    #[test]
    fn a_key_over_the_limit_names_it() {
        match refused(&"k".repeat(MAX_KEY_BYTES + 1)) {
            ErrorCode::LimitExceeded(hit) => assert_eq!(hit.limit, "blob.key_bytes"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_ranges_are_refused_and_others_translate() {
        assert!(get_range(ByteRange::Bounded((5, 0))).is_err());
        assert!(get_range(ByteRange::Suffix(0)).is_err());
        assert_eq!(
            get_range(ByteRange::Bounded((10, 5))).expect("range"),
            GetRange::Bounded(10..15)
        );
        assert_eq!(
            get_range(ByteRange::Suffix(3)).expect("range"),
            GetRange::Suffix(3)
        );
    }

    #[test]
    fn metadata_names_are_tokens_and_the_total_is_capped() {
        let options = |metadata: Vec<(String, String)>| PutOptions {
            content_type: None,
            metadata,
        };
        assert!(attributes(&options(vec![("bad name".into(), "v".into())])).is_err());
        assert!(attributes(&options(vec![("ok".into(), "line\nbreak".into())])).is_err());
        let big = vec![("n".into(), "v".repeat(MAX_METADATA_BYTES))];
        assert!(attributes(&options(big)).is_err());
        let fine = attributes(&options(vec![("Author".into(), "me".into())])).expect("fine");
        assert_eq!(
            fine.get(&Attribute::Metadata("author".into()))
                .map(|v| v.as_ref()),
            Some("me")
        );
    }
}
