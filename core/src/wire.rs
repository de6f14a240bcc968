//! The backend wire protocol (spec section 2): key material, signatures, sealed boxes, request and
//! response bodies, and the plain HTTP values that cross the sans-IO boundary.
//!
//! Everything here is a pure function of its inputs. Randomness (key seeds, request ids, sealed box
//! ephemeral keys) is handed in by the caller.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512};

/// Every backend call times out after this long (spec section 2); defined in [`crate::limits`].
pub use crate::limits::REQUEST_TIMEOUT_MS;

/// How an `Authorization` header that carries an [`AgentAssertion`] begins (scheme and space).
pub const ASSERTION_PREFIX: &str = "AgentAssertion ";

/// The token of an `Authorization` header value in the `AgentAssertion` scheme (what follows
/// [`ASSERTION_PREFIX`], not yet decoded); `None` for any other scheme.
pub fn assertion_token(value: &str) -> Option<&str> {
    value.strip_prefix(ASSERTION_PREFIX)
}

/// Path of the biscuit endpoint.
pub const BISCUIT_PATH: &str = "/authenticate_app_v2";
/// Path of identity registration.
pub const IDENTITY_REGISTER_PATH: &str = "/v1/agent/register";
/// Path of the model request that carries the downstream assertion **\[ours\]**.
pub const MODEL_PATH: &str = "/v1/responses";
/// Response header that carries the biscuit.
pub const BISCUIT_RESPONSE_HEADER: &str = "x-openai-authorization";
/// Request header that carries the biscuit on registration calls.
pub const BISCUIT_REQUEST_HEADER: &str = "X-OpenAI-Authorization";
/// Prefix of every biscuit request id.
pub const REQUEST_ID_PREFIX: &str = "codex-agent-identity-";

/// Path of task registration for one runtime.
pub fn task_register_path(agent_runtime_id: &str) -> String {
    format!("/v1/agent/{agent_runtime_id}/task/register")
}

/// The runtime id in a task registration path (without its query): the inverse of
/// [`task_register_path`]; `None` for any other path.
pub fn runtime_of_task_register_path(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/agent/")?.strip_suffix("/task/register")
}

/// The path part of an absolute URL: everything from the first `/` after the authority (`/` when
/// there is none), query included.
pub fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

/// HTTP method of a request core asks the driver to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

impl Method {
    /// The method's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request, fully formed: the driver sends it as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: Method,
    /// Absolute URL: the configured base plus the endpoint path.
    pub url: String,
    /// Header names and values in the order they are sent.
    pub headers: Vec<(String, String)>,
    /// JSON body, when there is one.
    pub body: Option<String>,
}

impl HttpRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path part of the URL ([`url_path`]).
    pub fn path(&self) -> &str {
        url_path(&self.url)
    }
}

/// A response as the client saw it. Header values and the body are raw bytes: a backend may
/// answer anything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text for error messages: lossy UTF-8, cut to 512 characters.
    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut cut: String = text.chars().take(512).collect();
        if cut.len() < text.len() {
            cut.push('…');
        }
        cut
    }
}

/// What the agent says about itself when it registers an identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abom {
    /// Version of the agent.
    pub agent_version: String,
    /// Which harness runs the agent.
    pub agent_harness_id: String,
    /// Where the agent runs.
    pub running_location: String,
}

/// Body of `POST /v1/agent/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRegistrationRequest {
    /// Who is registering.
    pub abom: Abom,
    /// `ssh-ed25519 <base64 of the SSH wire blob>`.
    pub agent_public_key: String,
    /// Always empty in the reference design.
    pub capabilities: Vec<String>,
}

/// 2xx body of `POST /v1/agent/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRegistrationResponse {
    /// The runtime id the backend assigned.
    pub agent_runtime_id: String,
    /// **\[ours\]** When the identity stops being valid, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Body of `POST /v1/agent/{runtime}/task/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRegistrationRequest {
    /// Standard base64 Ed25519 signature of `"{runtime}:{timestamp}"`.
    pub signature: String,
    /// RFC 3339 seconds, `Z`.
    pub timestamp: String,
}

/// 2xx body of task registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRegistrationResponse {
    /// Standard base64 sealed box holding the UTF-8 task id.
    pub encrypted_task_id: String,
}

/// The JSON inside an `AgentAssertion` header. Field order is the wire order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentAssertion {
    /// Runtime id of the identity that signs.
    pub agent_runtime_id: String,
    /// Standard base64 Ed25519 signature of `"{runtime}:{task}:{timestamp}"`.
    pub signature: String,
    /// The task the request belongs to.
    pub task_id: String,
    /// RFC 3339 seconds, `Z`.
    pub timestamp: String,
}

/// Why a key or key text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The stored private key is not base64 PKCS#8 DER of an Ed25519 key.
    #[error("stored agent identity private key is not a valid PKCS#8 Ed25519 key")]
    BadPrivateKey,
    /// A public key is not `ssh-ed25519 <base64 wire blob>`.
    #[error("agent public key is not an ssh-ed25519 key")]
    BadPublicKey,
}

/// Why an encrypted task id could not be read. The texts are the spec's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskIdError {
    /// The field is not standard base64.
    #[error("encrypted task id is not valid base64")]
    BadBase64,
    /// The box does not open with this identity's key.
    #[error("failed to decrypt encrypted task id")]
    Decrypt,
    /// The plaintext is not UTF-8.
    #[error("decrypted task id is not valid UTF-8")]
    NotUtf8,
}

/// Why an assertion header was refused by a verifier.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// The header is not `AgentAssertion <base64url JSON>`.
    #[error("assertion header is malformed")]
    Malformed,
    /// The signature does not verify under the given key.
    #[error("assertion signature does not verify")]
    BadSignature,
}

/// An agent identity's key pair. The private half never leaves the auth store in any output.
#[derive(Clone)]
pub struct IdentityKey {
    signing: SigningKey,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is secret; show only the public half.
        f.debug_struct("IdentityKey").field("public", &self.ssh_public_key()).finish()
    }
}

impl PartialEq for IdentityKey {
    fn eq(&self, other: &Self) -> bool {
        self.signing.to_bytes() == other.signing.to_bytes()
    }
}
impl Eq for IdentityKey {}

impl IdentityKey {
    /// The key pair for a 32-byte Ed25519 seed (the seed bytes are handed in by the driver).
    pub fn from_seed(seed: [u8; 32]) -> IdentityKey {
        IdentityKey { signing: SigningKey::from_bytes(&seed) }
    }

    /// Reads a private key stored as standard base64 of PKCS#8 DER.
    pub fn from_pkcs8_base64(text: &str) -> Result<IdentityKey, KeyError> {
        let der = STANDARD.decode(text).map_err(|_| KeyError::BadPrivateKey)?;
        let signing = SigningKey::from_pkcs8_der(&der).map_err(|_| KeyError::BadPrivateKey)?;
        Ok(IdentityKey { signing })
    }

    /// The private key as standard base64 of PKCS#8 DER: the auth store's form. Secret.
    pub fn to_pkcs8_base64(&self) -> String {
        let der = self.signing.to_pkcs8_der().expect("an Ed25519 key always encodes as PKCS#8");
        STANDARD.encode(der.as_bytes())
    }

    /// `ssh-ed25519 <base64 of the SSH wire blob>`.
    pub fn ssh_public_key(&self) -> String {
        ssh_public_key(&self.signing.verifying_key())
    }

    /// Standard base64 Ed25519 signature of `message`.
    pub fn sign_base64(&self, message: &str) -> String {
        STANDARD.encode(self.signing.sign(message.as_bytes()).to_bytes())
    }

    /// The X25519 secret derived from the Ed25519 seed: SHA-512 of the seed, first 32 bytes,
    /// clamped.
    pub fn x25519_secret(&self) -> crypto_box::SecretKey {
        let digest = Sha512::digest(self.signing.to_bytes());
        let mut scalar = [0u8; 32];
        scalar.copy_from_slice(&digest[..32]);
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        crypto_box::SecretKey::from(scalar)
    }

    /// Opens a sealed, standard-base64 task id addressed to this identity.
    pub fn open_task_id(&self, encrypted_b64: &str) -> Result<String, TaskIdError> {
        let sealed = STANDARD.decode(encrypted_b64).map_err(|_| TaskIdError::BadBase64)?;
        let plain = self.x25519_secret().unseal(&sealed).map_err(|_| TaskIdError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| TaskIdError::NotUtf8)
    }

    /// The `Authorization` header value for a downstream request.
    pub fn assertion_header(
        &self,
        agent_runtime_id: &str,
        task_id: &str,
        timestamp: &str,
    ) -> String {
        let assertion = AgentAssertion {
            agent_runtime_id: agent_runtime_id.to_owned(),
            signature: self.sign_base64(&format!("{agent_runtime_id}:{task_id}:{timestamp}")),
            task_id: task_id.to_owned(),
            timestamp: timestamp.to_owned(),
        };
        let json = serde_json::to_string(&assertion).expect("assertion serializes");
        format!("{ASSERTION_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }
}

/// The SSH form of an Ed25519 public key.
pub fn ssh_public_key(key: &VerifyingKey) -> String {
    let mut blob = Vec::with_capacity(51);
    for part in [b"ssh-ed25519".as_slice(), key.as_bytes().as_slice()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {}", STANDARD.encode(blob))
}

/// Parses `ssh-ed25519 <base64 wire blob>` (a trailing comment is allowed).
pub fn parse_ssh_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let mut parts = text.split_whitespace();
    if parts.next() != Some("ssh-ed25519") {
        return Err(KeyError::BadPublicKey);
    }
    let blob = STANDARD
        .decode(parts.next().ok_or(KeyError::BadPublicKey)?)
        .map_err(|_| KeyError::BadPublicKey)?;
    let mut rest = blob.as_slice();
    let mut field = || -> Result<&[u8], KeyError> {
        if rest.len() < 4 {
            return Err(KeyError::BadPublicKey);
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            return Err(KeyError::BadPublicKey);
        }
        let (value, tail) = rest[4..].split_at(len);
        rest = tail;
        Ok(value)
    };
    if field()? != b"ssh-ed25519" {
        return Err(KeyError::BadPublicKey);
    }
    let key: [u8; 32] = field()?.try_into().map_err(|_| KeyError::BadPublicKey)?;
    if !rest.is_empty() {
        return Err(KeyError::BadPublicKey);
    }
    VerifyingKey::from_bytes(&key).map_err(|_| KeyError::BadPublicKey)
}

/// Whether `signature_b64` is a valid standard-base64 Ed25519 signature of `message` by `key`.
pub fn verify_signature(key: &VerifyingKey, message: &str, signature_b64: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(signature_b64) else { return false };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else { return false };
    key.verify(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&bytes)).is_ok()
}

/// The X25519 public key a task id is sealed to, from the identity's Ed25519 public key (the
/// Montgomery form of the same point).
pub fn x25519_public(key: &VerifyingKey) -> crypto_box::PublicKey {
    crypto_box::PublicKey::from(key.to_montgomery().to_bytes())
}

/// Seals `plaintext` to `recipient` and returns standard base64. The ephemeral key comes from
/// `rng`, so a seeded generator gives the same bytes every run.
pub fn seal_base64(
    recipient: &crypto_box::PublicKey,
    plaintext: &[u8],
    rng: &mut (impl rand_core::CryptoRng + rand_core::RngCore),
) -> String {
    let sealed = recipient.seal(rng, plaintext).expect("sealing to a valid key cannot fail");
    STANDARD.encode(sealed)
}

/// Decodes an `Authorization: AgentAssertion ...` header value into its JSON fields.
pub fn parse_assertion_header(value: &str) -> Result<AgentAssertion, AssertionError> {
    let encoded = assertion_token(value).ok_or(AssertionError::Malformed)?;
    let json = URL_SAFE_NO_PAD.decode(encoded.trim()).map_err(|_| AssertionError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| AssertionError::Malformed)
}

/// Verifies an assertion's signature under `key`.
pub fn verify_assertion(
    key: &VerifyingKey,
    assertion: &AgentAssertion,
) -> Result<(), AssertionError> {
    let message =
        format!("{}:{}:{}", assertion.agent_runtime_id, assertion.task_id, assertion.timestamp);
    if verify_signature(key, &message, &assertion.signature) {
        Ok(())
    } else {
        Err(AssertionError::BadSignature)
    }
}

/// `codex-agent-identity-<base64url of 16 bytes>`.
pub fn request_id(bytes: [u8; 16]) -> String {
    format!("{REQUEST_ID_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng as _;

    fn key(byte: u8) -> IdentityKey {
        IdentityKey::from_seed([byte; 32])
    }

    #[test]
    fn spec2_ssh_public_key_round_trips() {
        let k = key(7);
        let text = k.ssh_public_key();
        assert!(text.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"), "{text}");
        assert_eq!(parse_ssh_public_key(&text).unwrap(), k.signing.verifying_key());
        assert_eq!(parse_ssh_public_key("ssh-rsa AAAA"), Err(KeyError::BadPublicKey));
        assert_eq!(parse_ssh_public_key("ssh-ed25519 !!"), Err(KeyError::BadPublicKey));
    }

    #[test]
    fn spec2_pkcs8_round_trips() {
        let k = key(9);
        assert_eq!(IdentityKey::from_pkcs8_base64(&k.to_pkcs8_base64()).unwrap(), k);
        assert_eq!(IdentityKey::from_pkcs8_base64("bm90IGEga2V5"), Err(KeyError::BadPrivateKey));
    }

    #[test]
    fn spec2_task_signature_verifies_and_binds_the_message() {
        let k = key(1);
        let public = parse_ssh_public_key(&k.ssh_public_key()).unwrap();
        let sig = k.sign_base64("agent-1:2026-04-18T14:02:11Z");
        assert!(verify_signature(&public, "agent-1:2026-04-18T14:02:11Z", &sig));
        assert!(!verify_signature(&public, "agent-2:2026-04-18T14:02:11Z", &sig));
        assert!(!verify_signature(&public, "agent-1:2026-04-18T14:02:11Z", "not base64"));
    }

    #[test]
    fn spec2_sealed_box_round_trips_through_the_derived_x25519_key() {
        let k = key(3);
        let public = parse_ssh_public_key(&k.ssh_public_key()).unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        // The backend only knows the Ed25519 public key; the client only knows the seed.
        assert_eq!(x25519_public(&public), k.x25519_secret().public_key());
        let sealed = seal_base64(&x25519_public(&public), b"task_0d77", &mut rng);
        assert_eq!(k.open_task_id(&sealed).unwrap(), "task_0d77");
        assert_eq!(key(4).open_task_id(&sealed), Err(TaskIdError::Decrypt));
        assert_eq!(k.open_task_id("%%%"), Err(TaskIdError::BadBase64));
        let not_utf8 = seal_base64(&x25519_public(&public), &[0xff, 0xfe], &mut rng);
        assert_eq!(k.open_task_id(&not_utf8), Err(TaskIdError::NotUtf8));
    }

    #[test]
    fn spec2_assertion_header_has_fields_in_wire_order_and_verifies() {
        let k = key(2);
        let header = k.assertion_header("agent-1", "task-1", "2026-04-18T14:02:11Z");
        let encoded = assertion_token(&header).unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert!(json.starts_with(r#"{"agent_runtime_id":"agent-1","signature":""#), "{json}");
        assert!(
            json.ends_with(r#"","task_id":"task-1","timestamp":"2026-04-18T14:02:11Z"}"#),
            "{json}"
        );
        let parsed = parse_assertion_header(&header).unwrap();
        let public = parse_ssh_public_key(&k.ssh_public_key()).unwrap();
        assert_eq!(verify_assertion(&public, &parsed), Ok(()));
        let forged = AgentAssertion { task_id: "task-2".into(), ..parsed };
        assert_eq!(verify_assertion(&public, &forged), Err(AssertionError::BadSignature));
        assert_eq!(parse_assertion_header("Bearer x"), Err(AssertionError::Malformed));
    }

    #[test]
    fn spec2_request_id_shape() {
        let id = request_id([0xfb; 16]);
        assert_eq!(id, "codex-agent-identity--_v7-_v7-_v7-_v7-_v7-w");
    }

    #[test]
    fn spec2_wire_facts_build_and_read_back() {
        assert_eq!(ASSERTION_PREFIX, "AgentAssertion ");
        assert_eq!(assertion_token("AgentAssertion e30"), Some("e30"));
        assert_eq!(assertion_token("Bearer e30"), None);
        assert_eq!(task_register_path("agent-1"), "/v1/agent/agent-1/task/register");
        assert_eq!(
            runtime_of_task_register_path("/v1/agent/agent-1/task/register"),
            Some("agent-1")
        );
        for other in [IDENTITY_REGISTER_PATH, "/v1/agent/task/register", "/v1/agent/a/task"] {
            assert_eq!(runtime_of_task_register_path(other), None, "{other}");
        }
        assert_eq!(url_path("http://h:1/v1/responses?x=1"), "/v1/responses?x=1");
        assert_eq!(url_path("http://h:1"), "/");
    }

    #[test]
    fn request_path_of_url() {
        let req = HttpRequest {
            method: Method::Get,
            url: "http://127.0.0.1:80/v1/agent/a/task/register".into(),
            headers: vec![],
            body: None,
        };
        assert_eq!(req.path(), "/v1/agent/a/task/register");
    }
}
