//! Personalises by the client's country: greeting, currency and a `vary`-safe cache
//! header. The country comes from the `x-outpost-country` header, which the node sets
//! from its `[server] geo` table of client networks (the longest matching prefix wins)
//! and removes when a client sends it itself. No table entry: no country, the default
//! answer. (outpost reads no GeoIP database; an operator with one exports the networks
//! they care about into `geo`, or fronts the node with a CDN that sets the address.)

use outpost_sdk::{Env, Request, Response, Result};

#[outpost_sdk::fetch]
async fn fetch(req: Request, _env: Env) -> Result<Response> {
    let country = req.header("x-outpost-country").unwrap_or("").to_string();
    let (greeting, currency, language) = match country.as_str() {
        "DE" | "AT" => ("Hallo", "EUR", "de"),
        "NL" => ("Hoi", "EUR", "nl"),
        "FR" => ("Bonjour", "EUR", "fr"),
        "GB" => ("Hello", "GBP", "en-GB"),
        "JP" => ("こんにちは", "JPY", "ja"),
        _ => ("Hello", "USD", "en"),
    };
    let shown = if country.is_empty() {
        "unknown"
    } else {
        &country
    };
    Ok(Response::text(format!(
        "{greeting}! Prices in {currency}. (country: {shown})\n"
    ))
    .with_header("vary", "x-outpost-country")
    .with_header("content-language", language))
}
