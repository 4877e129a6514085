//! What a guest's SQL may do: no ATTACH, no extensions, no node-owned PRAGMAs, and no
//! transaction control (a transaction spans one `batch` call, so no guest can leave the
//! write lock held between requests).

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// `PRAGMA`s a guest may run: introspection and harmless tuning. Everything else (say
/// `journal_mode`, `synchronous`, `max_page_count`, `writable_schema`) is the node's.
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_keys",
    "foreign_key_check",
    "defer_foreign_keys",
    "user_version",
    "optimize",
    "integrity_check",
    "quick_check",
    "page_count",
    "page_size",
    "freelist_count",
    "data_version",
    "collation_list",
    "function_list",
];

/// The authorizer's verdict; `host_statement` is set while the host itself runs
/// BEGIN/COMMIT for a batch.
pub(super) fn authorize(context: &AuthContext<'_>, host_statement: bool) -> Authorization {
    match context.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, .. } => {
            if ALLOWED_PRAGMAS
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(pragma_name))
            {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Deny
        }
        // Transactions span one call: `batch` is the way to group statements, so a guest
        // can never leave a transaction (and the write lock) open between requests.
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } if !host_statement => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}
