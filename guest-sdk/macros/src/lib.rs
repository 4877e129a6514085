//! `#[outpost_sdk::fetch]`: turns `async fn fetch(req: Request, env: Env) -> Result<Response>`
//! into the component's `wasi:http/incoming-handler` export.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::{ItemFn, parse_macro_input, spanned::Spanned};

/// Marks the request handler of an outpost guest.
///
/// ```ignore
/// #[outpost_sdk::fetch]
/// async fn fetch(req: Request, env: Env) -> Result<Response> {
///     Ok(Response::text("hello"))
/// }
/// ```
#[proc_macro_attribute]
pub fn fetch(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    if function.sig.asyncness.is_none() {
        return quote_spanned! { function.sig.fn_token.span() =>
            compile_error!("#[outpost_sdk::fetch] goes on an `async fn fetch(req: Request, env: Env) -> Result<Response>`");
        }
        .into();
    }
    if function.sig.inputs.len() != 2 {
        return quote_spanned! { function.sig.inputs.span() =>
            compile_error!("the fetch handler takes two arguments: `(req: Request, env: Env)`");
        }
        .into();
    }
    let name = &function.sig.ident;
    quote! {
        #function

        struct __OutpostGuest;

        impl ::outpost_sdk::__private::wasip2::exports::http::incoming_handler::Guest for __OutpostGuest {
            fn handle(
                request: ::outpost_sdk::__private::wasip2::http::types::IncomingRequest,
                response_out: ::outpost_sdk::__private::wasip2::http::types::ResponseOutparam,
            ) {
                ::outpost_sdk::__private::serve(request, response_out, #name);
            }
        }

        ::outpost_sdk::__private::wasip2::http::proxy::export!(
            __OutpostGuest with_types_in ::outpost_sdk::__private::wasip2
        );

        // A `src/main.rs` needs a `main`; components are entered through `handle`.
        #[allow(dead_code)]
        fn main() {}
    }
    .into()
}
