//! A throwaway PKI for the database TLS tests, made with openssl: a CA and, signed by it, a
//! server certificate for 127.0.0.1 (the address the servers listen on in their namespace).

use super::sh;
use std::path::{Path, PathBuf};

/// A CA (`<name>-ca.pem`) and, signed by it, a server certificate and key for 127.0.0.1.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Runs openssl with whitespace-separated arguments (the temp paths have no spaces).
fn openssl(args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    sh("openssl", &args);
}

/// Makes the CA and the server certificate in `dir`, file names prefixed with `name`.
pub fn make_pki(dir: &Path, name: &str) -> Pki {
    let p = |file: &str| dir.join(format!("{name}-{file}"));
    let (ca, ca_key) = (p("ca.pem"), p("ca.key"));
    let (cert, key, csr, ext) = (p("server.pem"), p("server.key"), p("csr"), p("ext.cnf"));
    openssl(&format!(
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={name}-test-ca \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
         -keyout {} -out {}",
        ca_key.display(),
        ca.display()
    ));
    openssl(&format!(
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {} -out {}",
        key.display(),
        csr.display()
    ));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&format!(
        "x509 -req -days 2 -in {} -CA {} -CAkey {} -CAcreateserial -extfile {} -out {}",
        csr.display(),
        ca.display(),
        ca_key.display(),
        ext.display(),
        cert.display()
    ));
    Pki { ca, cert, key }
}
