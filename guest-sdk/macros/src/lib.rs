//! `#[outpost_sdk::fetch]`: turns `async fn fetch(req: Request, env: Env) -> Result<Response>`
//! into the component's `wasi:http/incoming-handler` export (which also runs the Durable
//! Object classes it lists); `#[outpost_sdk::durable_object]` names a class.

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
///
/// A component that also runs Durable Objects lists their classes:
/// `#[outpost_sdk::fetch(objects = [Counter, Room])]`.
#[proc_macro_attribute]
pub fn fetch(attr: TokenStream, item: TokenStream) -> TokenStream {
    let objects = match parse_objects(attr) {
        Ok(objects) => objects,
        Err(error) => return error.to_compile_error().into(),
    };
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
                ::outpost_sdk::__private::serve(request, response_out, #name, &[
                    #( (
                        <#objects as ::outpost_sdk::ObjectClass>::CLASS,
                        ::outpost_sdk::objects::dispatch::entry::<#objects>
                            as ::outpost_sdk::objects::dispatch::Entry,
                    ), )*
                ]);
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

/// `objects = [A, B]`, or nothing.
fn parse_objects(attr: TokenStream) -> syn::Result<Vec<syn::Path>> {
    if attr.is_empty() {
        return Ok(Vec::new());
    }
    let parser = |input: syn::parse::ParseStream<'_>| {
        let key: syn::Ident = input.parse()?;
        if key != "objects" {
            return Err(syn::Error::new(
                key.span(),
                "expected `objects = [Class, ...]`",
            ));
        }
        input.parse::<syn::Token![=]>()?;
        let list;
        syn::bracketed!(list in input);
        let classes =
            syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated(&list)?;
        Ok(classes.into_iter().collect())
    };
    syn::parse::Parser::parse(parser, attr)
}

/// Marks a Durable Object class: its class name (in `durable_objects = { BINDING = {
/// class = "…" } }`) is the type's name. Implement [`DurableObject`] for it and list it
/// in `#[outpost_sdk::fetch(objects = [...])]`.
///
/// ```ignore
/// #[outpost_sdk::durable_object]
/// struct Counter { count: Option<i64> }
/// ```
#[proc_macro_attribute]
pub fn durable_object(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as syn::DeriveInput);
    let name = &item.ident;
    let class = name.to_string();
    let (impl_generics, type_generics, where_clause) = item.generics.split_for_impl();
    quote! {
        #item

        impl #impl_generics ::outpost_sdk::ObjectClass for #name #type_generics #where_clause {
            const CLASS: &'static str = #class;
        }
    }
    .into()
}
