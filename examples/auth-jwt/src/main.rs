//! JWT authentication in front of an origin: the request goes on only with a valid
//! `Authorization: Bearer <token>`, and the origin learns who it is from `x-user-id`.
//!
//! ```toml
//! kv = ["JWKS"]                                   # where the fetched key set is cached
//! vars = { ORIGIN = "https://app.internal", JWKS_URL = "https://id.example.com/.well-known/jwks.json",
//!          ISSUER = "https://id.example.com", AUDIENCE = "app", JWKS_TTL = 300, LEEWAY = 30 }
//! secrets = { HS256_SECRET = { env = "APP_JWT_SECRET" } }  # only if HS256 tokens are accepted
//! outbound = ["https://app.internal", "https://id.example.com"]
//! ```
//!
//! - HS256 tokens are checked with the `HS256_SECRET` secret, RS256 tokens with the key
//!   named by their `kid` in the JWKS at `JWKS_URL`. Each algorithm uses only its own kind
//!   of key, so an HS256 token "signed" with a public RSA key is refused. Other algorithms
//!   are refused.
//! - The JWKS is cached in KV for `JWKS_TTL` seconds (default 300). A `kid` missing from
//!   the cached set triggers one refetch (keys rotate), at most once a minute, so tokens
//!   with made-up `kid`s cannot turn every request into a fetch.
//! - `exp` is required; `nbf`, `iss` (when `ISSUER` is set) and `aud` (when `AUDIENCE` is
//!   set) are checked, with `LEEWAY` seconds (default 30) of clock skew; `sub` is required
//!   and becomes `x-user-id`.
//! - Invalid: `401` with a JSON reason and `WWW-Authenticate: Bearer error="invalid_token"`.
//!   Valid: the request (method, path, query, headers, body) goes to `ORIGIN` with
//!   `x-user-id` set and `Authorization` removed; the origin's response comes back as is.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use outpost_sdk::stores::kv::Put;
use outpost_sdk::{Env, Error, Method, Request, Response, Result};
use serde::Deserialize;

const JWKS_KEY: &str = "jwks";
const REFETCH_MARK: &str = "jwks-refetched";
const REFETCH_EVERY: u64 = 60;

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let origin = env
        .var("ORIGIN")
        .ok_or_else(|| Error::internal("auth-jwt needs the ORIGIN var"))?;
    let token = match bearer_token(&req) {
        Some(token) => token.to_string(),
        None => return Ok(unauthorized("missing bearer token")),
    };
    let user = match verify(&token, &env).await? {
        Ok(user) => user,
        Err(reason) => return Ok(unauthorized(&reason)),
    };
    let forwarded = req
        .forward_to(&origin)?
        .without_header("authorization")
        .with_header("x-user-id", &user);
    env.fetch(forwarded).await
}

fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `Ok(Ok(sub))` for a valid token, `Ok(Err(reason))` for one to refuse, `Err` when the
/// node itself fails (KV, the JWKS origin), which is a 5xx rather than the client's fault.
async fn verify(token: &str, env: &Env) -> Result<std::result::Result<String, String>> {
    let header = match jsonwebtoken::decode_header(token) {
        Ok(header) => header,
        Err(_) => return Ok(Err("malformed token".into())),
    };
    let key = match header.alg {
        Algorithm::HS256 => match env.secret("HS256_SECRET") {
            Some(secret) => DecodingKey::from_secret(secret.as_bytes()),
            None => return Ok(Err("HS256 tokens are not accepted here".into())),
        },
        Algorithm::RS256 => {
            let Some(kid) = header.kid.as_deref() else {
                return Ok(Err("RS256 token without a kid".into()));
            };
            match rsa_key(kid, env).await? {
                Some(key) => key,
                None => return Ok(Err(format!("unknown key id `{kid}`"))),
            }
        }
        other => return Ok(Err(format!("algorithm {other:?} is not accepted"))),
    };

    let mut validation = Validation::new(header.alg);
    validation.leeway = number(env, "LEEWAY", 30)?;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    match env.var("AUDIENCE") {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    if let Some(issuer) = env.var("ISSUER") {
        validation.set_issuer(&[issuer]);
    }
    Ok(
        match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => Ok(data.claims.sub),
            Err(e) => Err(reason(e.kind())),
        },
    )
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim `{claim}`"),
        ErrorKind::InvalidClaimFormat(claim) => format!("claim `{claim}` has the wrong type"),
        ErrorKind::InvalidAlgorithm => "algorithm does not match the key".into(),
        _ => "malformed token".into(),
    }
}

/// The RS256 key `kid` from the cached JWKS, refetching once when it is not there.
async fn rsa_key(kid: &str, env: &Env) -> Result<Option<DecodingKey>> {
    let kv = env.kv("JWKS")?;
    let cached: Option<JwkSet> = match kv.get_text(JWKS_KEY).await? {
        Some(text) => serde_json::from_str(&text).ok(),
        None => None,
    };
    let set = match cached {
        Some(set) if set.find(kid).is_some() => set,
        Some(set) if kv.get(REFETCH_MARK).await?.is_some() => set,
        _ => {
            let set = fetch_jwks(env).await?;
            let ttl = number(env, "JWKS_TTL", 300)?;
            let text = serde_json::to_string(&set).map_err(|e| Error::internal(e.to_string()))?;
            kv.put_with(JWKS_KEY, text, Put::default().ttl(ttl)).await?;
            kv.put_with(
                REFETCH_MARK,
                now().to_string(),
                Put::default().ttl(REFETCH_EVERY),
            )
            .await?;
            set
        }
    };
    let Some(jwk) = set.find(kid) else {
        return Ok(None);
    };
    // A key published for another algorithm is not a key for this token.
    if jwk
        .common
        .key_algorithm
        .is_some_and(|alg| alg != jsonwebtoken::jwk::KeyAlgorithm::RS256)
    {
        return Ok(None);
    }
    Ok(DecodingKey::from_jwk(jwk).ok())
}

async fn fetch_jwks(env: &Env) -> Result<JwkSet> {
    let url = env
        .var("JWKS_URL")
        .ok_or_else(|| Error::internal("RS256 tokens need the JWKS_URL var"))?;
    let response = env.fetch(Request::new(Method::GET, &url)?).await?;
    if response.status() != 200 {
        return Err(Error::new(
            502,
            format!("the JWKS at {url} answered {}", response.status()),
        ));
    }
    response
        .read_json()
        .await
        .map_err(|e| Error::new(502, format!("the JWKS at {url} is not a key set: {e}")))
}

fn unauthorized(reason: &str) -> Response {
    let body = serde_json::json!({ "error": "invalid_token", "reason": reason });
    let challenge = format!(
        "Bearer error=\"invalid_token\", error_description=\"{}\"",
        reason.replace(['"', '\\'], "'")
    );
    Response::text(body.to_string())
        .with_status(401)
        .with_header("content-type", "application/json")
        .with_header("www-authenticate", challenge)
}

fn number(env: &Env, name: &str, default: u64) -> Result<u64> {
    match env.var(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Error::internal(format!("{name} must be a whole number of seconds"))),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
