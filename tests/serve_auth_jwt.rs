//! `examples/auth-jwt` through the real binary, in front of a real origin and a real
//! identity provider serving a JWKS: what passes, what is refused and why.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::origin::{Behaviour, Origin};
use support::{Node, Reply, tenant, write_config};

const HS_SECRET: &str = "a-shared-secret-of-the-tenant-0f3a9c";
const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "shop";
const SIGNING_KEY: &[u8] = include_bytes!("fixtures/jwt-signing-key.pem");
const IMPOSTOR_KEY: &[u8] = include_bytes!("fixtures/jwt-impostor-key.pem");

/// The identity provider's published key set: the signing key as `k1`.
fn jwks() -> String {
    let key = EncodingKey::from_rsa_pem(SIGNING_KEY).expect("signing key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("k1".into());
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).expect("jwks")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Good claims for user `sub`, valid for an hour.
fn claims(sub: &str) -> serde_json::Value {
    json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 3600, "nbf": now() - 10 })
}

fn rs256(kid: &str, key: &[u8], claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(key).expect("key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("sign")
}

struct Setup {
    node: Node,
    app: Origin,
    idp: Origin,
}

async fn setup() -> Setup {
    let app = Origin::start("app").await;
    let idp = Origin::start_with(
        "idp",
        Behaviour {
            documents: vec![("/.well-known/jwks.json", jwks())],
            ..Behaviour::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("jwt-secret"), HS_SECRET).expect("write secret");
    let extra = format!(
        "kv = [\"JWKS\"]\n\
         vars = {{ ORIGIN = {:?}, JWKS_URL = {:?}, ISSUER = {ISSUER:?}, AUDIENCE = {AUDIENCE:?} }}\n\
         secrets = {{ HS256_SECRET = {{ file = \"jwt-secret\" }} }}\n\
         outbound = [{:?}, {:?}]",
        app.url(),
        format!("{}/.well-known/jwks.json", idp.url()),
        app.url(),
        idp.url(),
    );
    let (config, addr) = write_config(dir.path(), &tenant("auth", "auth-jwt", &["/"], &extra));
    let node = Node::start_with(dir, &config, addr).await;
    Setup { node, app, idp }
}

impl Setup {
    async fn call(&self, token: Option<&str>) -> Reply {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("x-user-id", "spoofed-by-client")];
        if let Some(value) = authorization.as_deref() {
            headers.push(("authorization", value));
        }
        self.node
            .send(
                Method::POST,
                "shop.test",
                "/orders?page=2",
                &headers,
                Bytes::from_static(b"order"),
            )
            .await
    }

    /// Asserts a 401 with `reason` and that the app never saw the request.
    async fn refused(&self, token: Option<&str>, reason: &str) {
        let reply = self.call(token).await;
        assert_eq!(
            reply.status,
            401,
            "{}; the node logged:\n{}",
            reply.body,
            self.node.logs()
        );
        assert_eq!(reply.json()["reason"], reason, "{}", reply.body);
        assert_eq!(reply.json()["error"], "invalid_token");
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer error=\"invalid_token\"")),
            "{:?}",
            reply.header("www-authenticate")
        );
        assert!(self.app.seen().is_empty(), "the app saw a refused request");
    }

    fn jwks_fetches(&self) -> usize {
        self.idp.seen().len()
    }
}

#[tokio::test]
async fn a_valid_rs256_token_reaches_the_origin_as_its_user_and_the_jwks_is_cached() {
    let s = setup().await;
    let token = rs256("k1", SIGNING_KEY, &claims("user-42"));
    for round in 0..3 {
        let reply = s.call(Some(&token)).await;
        assert_eq!(reply.status, 201, "round {round}: {}", reply.body);
        assert_eq!(reply.body, "app saw POST /orders?page=2");
    }
    let seen = s.app.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].header("x-user-id"),
        Some("user-42"),
        "and not the client's claim"
    );
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the token stays at the edge"
    );
    assert_eq!(seen[0].body, Bytes::from_static(b"order"));
    assert_eq!(
        s.jwks_fetches(),
        1,
        "the key set comes from KV after the first fetch"
    );
}

#[tokio::test]
async fn a_valid_hs256_token_is_checked_with_the_tenant_secret() {
    let s = setup().await;
    let reply = s.call(Some(&hs256(HS_SECRET, &claims("user-7")))).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(s.app.seen()[0].header("x-user-id"), Some("user-7"));
    assert_eq!(s.jwks_fetches(), 0, "HS256 needs no key set");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = setup().await;
    let mut expired = claims("user-42");
    expired["exp"] = json!(now() - 3600);
    s.refused(Some(&rs256("k1", SIGNING_KEY, &expired)), "token expired")
        .await;
    s.refused(Some(&hs256(HS_SECRET, &expired)), "token expired")
        .await;
}

#[tokio::test]
async fn a_token_not_yet_valid_or_without_exp_is_refused() {
    let s = setup().await;
    let mut early = claims("user-42");
    early["nbf"] = json!(now() + 3600);
    s.refused(Some(&hs256(HS_SECRET, &early)), "token not valid yet (nbf)")
        .await;
    let mut forever = claims("user-42");
    forever.as_object_mut().expect("object").remove("exp");
    s.refused(Some(&hs256(HS_SECRET, &forever)), "missing claim `exp`")
        .await;
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let s = setup().await;
    // Signed by another key under the published kid.
    s.refused(
        Some(&rs256("k1", IMPOSTOR_KEY, &claims("user-42"))),
        "bad signature",
    )
    .await;
    s.refused(
        Some(&hs256("not-the-secret", &claims("user-42"))),
        "bad signature",
    )
    .await;
    // A valid token with its payload swapped for another user's.
    let good = rs256("k1", SIGNING_KEY, &claims("user-42"));
    let other = rs256("k1", SIGNING_KEY, &claims("admin"));
    let parts: Vec<&str> = good.split('.').collect();
    let other_payload = other.split('.').nth(1).expect("payload");
    let forged = format!("{}.{other_payload}.{}", parts[0], parts[2]);
    s.refused(Some(&forged), "bad signature").await;
}

#[tokio::test]
async fn a_wrong_audience_or_issuer_is_refused() {
    let s = setup().await;
    let mut elsewhere = claims("user-42");
    elsewhere["aud"] = json!("billing");
    s.refused(
        Some(&rs256("k1", SIGNING_KEY, &elsewhere)),
        "wrong audience",
    )
    .await;
    let mut foreign = claims("user-42");
    foreign["iss"] = json!("https://evil.example.test");
    s.refused(Some(&rs256("k1", SIGNING_KEY, &foreign)), "wrong issuer")
        .await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused_and_cannot_force_a_fetch_per_request() {
    let s = setup().await;
    let token = rs256("k9", SIGNING_KEY, &claims("user-42"));
    s.refused(Some(&token), "unknown key id `k9`").await;
    assert_eq!(s.jwks_fetches(), 1, "an empty cache is filled once");
    s.refused(Some(&token), "unknown key id `k9`").await;
    s.refused(
        Some(&rs256("k8", SIGNING_KEY, &claims("u"))),
        "unknown key id `k8`",
    )
    .await;
    assert_eq!(
        s.jwks_fetches(),
        1,
        "unknown kids refetch the key set at most once a minute"
    );
}

#[tokio::test]
async fn missing_or_malformed_credentials_are_refused() {
    let s = setup().await;
    s.refused(None, "missing bearer token").await;
    s.refused(Some("not.a.jwt"), "malformed token").await;
    let mut header = Header::new(Algorithm::HS384);
    header.kid = None;
    let hs384 = jsonwebtoken::encode(
        &header,
        &claims("user-42"),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("sign");
    s.refused(Some(&hs384), "algorithm HS384 is not accepted")
        .await;
}
