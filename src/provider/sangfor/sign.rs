//! The EC2 / AWS4-HMAC-SHA256 signature SCP uses (sangfor-scp-api.md §2.1).
//!
//! One implementation serves both sides: the client signs with it and the simulator verifies
//! with it, so the two can never drift apart. The canonical query string is always empty
//! (query parameters are not signed) and the body is hashed exactly as it goes on the wire.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name that opens the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What a signature covers besides the headers: who signs, where, and when.
#[derive(Debug, Clone)]
pub struct SigningScope<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDD'T'HHMMSS'Z'`, the value of `X-Amz-Date`.
    pub amz_date: &'a str,
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The canonical request: method, raw path, empty query, `name:value\n` per signed header (in
/// the order given, names lower-cased), the signed header list, and the body hash.
pub fn canonical_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let mut canonical_headers = String::new();
    for (name, value) in headers {
        canonical_headers.push_str(&name.to_ascii_lowercase());
        canonical_headers.push(':');
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let signed = signed_header_list(headers);
    format!("{}\n{}\n\n{}\n{}\n{}", method.to_ascii_uppercase(), path, canonical_headers, signed, sha256_hex(body))
}

/// `h1;h2`: the lower-cased names of the signed headers, in order.
pub fn signed_header_list(headers: &[(&str, &str)]) -> String {
    headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect::<Vec<_>>().join(";")
}

/// `DATE/REGION/SERVICE/aws4_request`.
pub fn credential_scope(scope: &SigningScope<'_>) -> String {
    let date = scope.amz_date.get(..8).unwrap_or(scope.amz_date);
    format!("{date}/{}/{}/aws4_request", scope.region, scope.service)
}

/// The string to sign for a canonical request.
pub fn string_to_sign(scope: &SigningScope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        scope.amz_date,
        credential_scope(scope),
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of a request.
pub fn signature(scope: &SigningScope<'_>, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let date = scope.amz_date.get(..8).unwrap_or(scope.amz_date);
    let k_date = hmac(format!("AWS4{}", scope.secret_key).as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let canonical = canonical_request(method, path, headers, body);
    hex::encode(hmac(&k_signing, string_to_sign(scope, &canonical).as_bytes()))
}

/// The full `Authorization` header value for a request.
pub fn authorization(
    scope: &SigningScope<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        scope.access_key,
        credential_scope(scope),
        signed_header_list(headers),
        signature(scope, method, path, headers, body)
    )
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses an EC2 `Authorization` header; tolerant of whitespace after the commas.
pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.trim().strip_prefix(ALGORITHM)?.trim_start();
    let (mut credential, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key.trim() {
            "Credential" => credential = Some(val.trim()),
            "SignedHeaders" => signed = Some(val.trim()),
            "Signature" => sig = Some(val.trim()),
            _ => {}
        }
    }
    let mut cred = credential?.split('/');
    let access_key = cred.next()?.to_string();
    let date = cred.next()?.to_string();
    let region = cred.next()?.to_string();
    let service = cred.next()?.to_string();
    if cred.next()? != "aws4_request" {
        return None;
    }
    let signed_headers = signed?.split(';').filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase()).collect();
    Some(ParsedAuthorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature: sig?.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_scope() -> SigningScope<'static> {
        SigningScope {
            access_key: "AKIDEXAMPLE",
            secret_key: "SKEXAMPLESECRET",
            region: "cn-south-1",
            service: "open-api",
            amz_date: "20240102T030405Z",
        }
    }

    const DATE: [(&str, &str); 1] = [("x-amz-date", "20240102T030405Z")];

    #[test]
    fn canonical_request_matches_the_document() {
        let c = canonical_request("GET", "/janus/20180725/servers", &DATE, b"");
        assert_eq!(
            c,
            "GET\n/janus/20180725/servers\n\nx-amz-date:20240102T030405Z\n\nx-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(&doc_scope(), &c),
            "AWS4-HMAC-SHA256\n20240102T030405Z\n20240102/cn-south-1/open-api/aws4_request\nba7b70fcec5a235d57c6300dfd8043f34929dd1df9ae04c8f08489f1607412c7"
        );
    }

    #[test]
    fn document_test_vectors() {
        let s = doc_scope();
        let create = r#"{"az_id": "az1", "image_id": "img1", "storage_tag_id": "tag1", "cores": 2, "sockets": 1, "memory_mb": 2048, "count": 1, "name": "vm1", "description": "", "networks": [{"vif_id": "net0", "vpc_id": "vpc1", "subnet_id": "sn1", "connect": 1, "model": "virtio"}], "power_on": 1, "location": {"id": "cluster"}}"#;
        assert_eq!(create.len(), 304);
        assert_eq!(sha256_hex(create.as_bytes()), "91cc2ed2f75f88bcffff56f3fdba3b33939a7286b41e94b704371784a89cf825");
        let cases: [(&str, &str, &[u8], &str); 4] = [
            ("GET", "/janus/20180725/servers", b"", "f21557db16961161064c231377b281f9258bfabfc56f016fc6b3a1c1b55b7494"),
            (
                "POST",
                "/janus/20180725/servers/abc/stop",
                b"{}",
                "a533197c0b563826889b355de5a52f29be4762ca2bd46dca0d09e8b08a0ae34a",
            ),
            (
                "DELETE",
                "/janus/20180725/servers/abc",
                br#"{"force": 0}"#,
                "7742865d2f458e858cc865158d2f3fc5e99d47be3783ffe92c70624aa8415c65",
            ),
            (
                "POST",
                "/janus/20180725/servers",
                create.as_bytes(),
                "3f1f7429d8d532f869c65912320436c8037e2f564b3b2ddc5ea6be6f5e6399f5",
            ),
        ];
        for (method, path, body, expected) in cases {
            assert_eq!(signature(&s, method, path, &DATE, body), expected, "{method} {path}");
        }
    }

    #[test]
    fn cookie_variant_known_answer() {
        let s = SigningScope {
            access_key: "febd45a7154f43c294947c2c47004cad",
            secret_key: "0c345d26da5046d6a015df07e2b621bb",
            region: "regionOne",
            service: "sdk-api",
            amz_date: "20240101T120000Z",
        };
        let headers = [("cookie", "aCMPAuthToken=testtoken1234567890abcdef"), ("x-amz-date", "20240101T120000Z")];
        assert_eq!(
            signature(&s, "GET", "/janus/20180725/azs", &headers, b""),
            "7f57de3c0021c7ce673be411a9a1eb58761fce2867a84cbea0605fc2c92808fa"
        );
    }

    #[test]
    fn authorization_round_trips_through_the_parser() {
        let s = doc_scope();
        let header = authorization(&s, "GET", "/janus/20180725/servers", &DATE, b"");
        assert!(header.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/cn-south-1/open-api/aws4_request, SignedHeaders=x-amz-date, Signature="));
        let parsed = parse_authorization(&header.replace(", ", ",   ")).expect("parses");
        assert_eq!(parsed.access_key, "AKIDEXAMPLE");
        assert_eq!(parsed.region, "cn-south-1");
        assert_eq!(parsed.signed_headers, vec!["x-amz-date"]);
        assert_eq!(parsed.signature, "f21557db16961161064c231377b281f9258bfabfc56f016fc6b3a1c1b55b7494");
        assert!(parse_authorization("Token abc").is_none());
        assert!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=AK/2024/r/s/wrong, SignedHeaders=x, Signature=y")
                .is_none()
        );
    }
}
