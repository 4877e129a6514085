//! A/B testing at the edge: each new client is assigned a variant by weight, the choice
//! sticks through a cookie, and the request goes on to that variant's origin.
//!
//! ```toml
//! vars = { VARIANTS = "control=80=http://app.internal:8080/v1 new-checkout=20=http://app.internal:8080/v2" }
//! outbound = ["http://app.internal:8080"]
//! ```
//!
//! Each entry is `name=weight=base_url`; the request's path and query are appended to the
//! variant's base URL. The client keeps its variant for 30 days (`ab_variant` cookie); an
//! unknown or stale cookie value is reassigned. The response says `x-ab-variant`.

use cookie::Cookie;
use outpost_sdk::{Env, Error, Request, Response, Result};

const COOKIE: &str = "ab_variant";

struct Variant {
    name: String,
    weight: u32,
    base: String,
}

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let variants = parse(&env.var("VARIANTS").unwrap_or_default())?;
    let sticky = req
        .header("cookie")
        .into_iter()
        .flat_map(Cookie::split_parse)
        .filter_map(|c| c.ok())
        .find(|c| c.name() == COOKIE)
        .and_then(|c| variants.iter().find(|v| v.name == c.value()));
    let (variant, assigned) = match sticky {
        Some(variant) => (variant, false),
        None => (pick(&variants), true),
    };
    let name = variant.name.clone();
    let mut response = env.fetch(req.forward_to(&variant.base)?).await?;
    if assigned {
        let cookie = Cookie::build((COOKIE, name.clone()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .max_age(cookie::time::Duration::days(30));
        response = response.with_header("set-cookie", cookie.to_string());
    }
    Ok(response.with_header("x-ab-variant", name))
}

/// A variant drawn by weight.
fn pick(variants: &[Variant]) -> &Variant {
    let total: u32 = variants.iter().map(|v| v.weight).sum();
    let mut bytes = [0u8; 4];
    wstd::rand::get_random_bytes(&mut bytes);
    let mut ticket = u32::from_le_bytes(bytes) % total;
    for variant in variants {
        if ticket < variant.weight {
            return variant;
        }
        ticket -= variant.weight;
    }
    &variants[variants.len() - 1]
}

fn parse(spec: &str) -> Result<Vec<Variant>> {
    let variants: Vec<Variant> = spec
        .split_whitespace()
        .map(|entry| {
            let mut fields = entry.splitn(3, '=');
            match (fields.next(), fields.next().map(str::parse), fields.next()) {
                (Some(name), Some(Ok(weight)), Some(base)) if !name.is_empty() => Ok(Variant {
                    name: name.to_string(),
                    weight,
                    base: base.trim_end_matches('/').to_string(),
                }),
                _ => Err(Error::internal(format!(
                    "VARIANTS entry `{entry}` is not name=weight=base_url"
                ))),
            }
        })
        .collect::<Result<_>>()?;
    if variants.iter().map(|v| v.weight).sum::<u32>() == 0 {
        return Err(Error::internal(
            "VARIANTS needs at least one variant with a weight above 0",
        ));
    }
    Ok(variants)
}
