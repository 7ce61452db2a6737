//! The ACME account key and JSON Web Signatures (RFC 7515, flattened JSON, ES256), as
//! RFC 8555 section 6.2 asks: `protected` holds `alg`, `nonce`, `url` and either the public
//! key (`jwk`, for newAccount) or the account URL (`kid`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

/// base64url without padding, as JOSE and ACME use it.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A P-256 account key.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

impl AccountKey {
    /// A new random key.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// The key in PKCS#8 DER (what [`AccountKey::pkcs8`] gave).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| ring::error::Unspecified)?;
        Ok(Self {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// PKCS#8 DER of the key (secret: stored with mode 0600).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK, members in the order RFC 7638 hashes them.
    pub fn jwk(&self) -> String {
        let point = self.pair.public_key().as_ref(); // 0x04 || x || y
        format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64url(&point[1..33]),
            b64url(&point[33..65])
        )
    }

    /// The JWK thumbprint (RFC 7638): base64url of SHA-256 of [`AccountKey::jwk`].
    pub fn thumbprint(&self) -> String {
        b64url(&Sha256::digest(self.jwk().as_bytes()))
    }

    /// A flattened JWS of `payload` (empty for POST-as-GET) for `url`, identified by `kid`
    /// (the account URL) or, without one, by the public key.
    pub fn sign(
        &self,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: &str,
    ) -> Result<String, ring::error::Unspecified> {
        let id = match kid {
            Some(k) => format!(r#""kid":{}"#, json_str(k)),
            None => format!(r#""jwk":{}"#, self.jwk()),
        };
        let protected = format!(
            r#"{{"alg":"ES256",{id},"nonce":{},"url":{}}}"#,
            json_str(nonce),
            json_str(url)
        );
        let protected = b64url(protected.as_bytes());
        let payload = b64url(payload.as_bytes());
        let signing_input = format!("{protected}.{payload}");
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())?;
        Ok(format!(
            r#"{{"protected":"{protected}","payload":"{payload}","signature":"{}"}}"#,
            b64url(sig.as_ref())
        ))
    }
}

/// `s` as a JSON string.
pub fn json_str(s: &str) -> String {
    phonebook_proto::json::to_string(&phonebook_proto::json::Value::Str(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn signature_verifies_and_key_round_trips() {
        let k = AccountKey::generate().unwrap();
        let k2 = AccountKey::from_pkcs8(k.pkcs8()).unwrap();
        assert_eq!(k.jwk(), k2.jwk());
        assert_eq!(k.thumbprint().len(), 43);
        let jws = k.sign("https://a/b", "n0nce", None, "{}").unwrap();
        let v = phonebook_proto::json::parse(jws.as_bytes(), Default::default()).unwrap();
        let phonebook_proto::json::Value::Object(f) = v else {
            panic!()
        };
        let get = |n: &str| match &f.iter().find(|(k, _)| k == n).unwrap().1 {
            phonebook_proto::json::Value::Str(s) => s.clone(),
            _ => panic!(),
        };
        let sig = URL_SAFE_NO_PAD.decode(get("signature")).unwrap();
        let input = format!("{}.{}", get("protected"), get("payload"));
        let public = k.pair.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(input.as_bytes(), &sig)
            .unwrap();
        let protected =
            String::from_utf8(URL_SAFE_NO_PAD.decode(get("protected")).unwrap()).unwrap();
        assert!(protected.contains(r#""jwk":{"crv":"P-256","kty":"EC""#));
        assert!(protected.contains(r#""nonce":"n0nce""#));
        let with_kid = k
            .sign("https://a/b", "n", Some("https://a/acct/1"), "")
            .unwrap();
        assert!(with_kid.contains(r#""payload":"""#));
        assert!(AccountKey::from_pkcs8(b"garbage").is_err());
    }

    #[test]
    fn thumbprint_of_rfc7638_example_shape() {
        // RFC 7638 hashes the members in lexicographic order with no whitespace.
        let k = AccountKey::generate().unwrap();
        let jwk = k.jwk();
        let order: Vec<usize> = ["\"crv\"", "\"kty\"", "\"x\"", "\"y\""]
            .iter()
            .map(|m| jwk.find(m).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert!(!jwk.contains(' '));
    }
}
