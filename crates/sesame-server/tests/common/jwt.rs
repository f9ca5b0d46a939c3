//! Minting hostile access tokens with the server's own key (as an operator
//! holding the master key could), for the attack tests.

use super::{Device, MASTER_KEY, TestServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use sesame_core::crypto::{self, b64};
use sesame_core::keys::KeyState;

pub struct Minter {
    pub kid: String,
    pub key: EncodingKey,
    pub public: Vec<u8>,
    pub claims: Value,
}

/// Reads the active signing key the way an operator holding the master key
/// could, and a real token's claims as a template.
pub async fn minter(srv: &TestServer, d: &Device) -> Minter {
    let recs = srv.engine().accounts().load_keys().await.unwrap();
    let active = recs.iter().find(|r| r.state == KeyState::Active).unwrap();
    let mk: [u8; 32] = crypto::b64_decode(MASTER_KEY).unwrap().try_into().unwrap();
    let pkcs8 = crypto::open(&mk, active.kid.as_bytes(), &active.sealed_private).unwrap();
    let token = d.access.clone().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims = serde_json::from_slice(&crypto::b64_decode(payload).unwrap()).unwrap();
    Minter {
        kid: active.kid.clone(),
        key: EncodingKey::from_ed_der(&pkcs8),
        public: active.public.clone(),
        claims,
    }
}

impl Minter {
    pub fn mint(&self, edit: impl FnOnce(&mut Header, &mut Value)) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.kid.clone());
        let mut c = self.claims.clone();
        edit(&mut h, &mut c);
        jsonwebtoken::encode(&h, &c, &self.key).unwrap()
    }
}

pub async fn rejected(d: &Device, token: &str, why: &str) {
    let mut dd = d.clone();
    dd.access = Some(token.to_string());
    let a = dd.me().await;
    assert_eq!(
        (a.status.as_u16(), a.code()),
        (401, "invalid_token"),
        "{why}: {}",
        a.text
    );
    assert_eq!(
        a.headers["www-authenticate"], "Bearer error=\"invalid_token\"",
        "{why}"
    );
    assert!(a.is_problem());
}

pub fn unsigned(header: &str, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}
