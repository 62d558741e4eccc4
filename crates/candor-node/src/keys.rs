//! Secret files of a member (its data or keys directory): the VRF, epoch-head and SMT keys and
//! the dev bearer token. Created with mode 0600 on first start; refused when
//! readable by group or others.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use candor_core::signed::SigningKeyPair;
use candor_core::vrf::VrfSecretKey;
use zeroize::Zeroizing;

use crate::NodeError;

type Result<T, E = NodeError> = std::result::Result<T, E>;

/// An I/O failure on `path`, described as `what` (e.g. "cannot read").
fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = format!("{what} {}", path.display());
    move |source| NodeError::KeyFile { what, source }
}

macro_rules! bail {
    ($($t:tt)*) => { return Err(NodeError::Keys(format!($($t)*))) };
}

/// The deployment's secret keys.
pub struct Keys {
    /// The VRF secret (label → index).
    pub vrf: VrfSecretKey,
    /// Signs epoch heads.
    pub head: SigningKeyPair,
    /// Signs SMTs.
    pub smt: SigningKeyPair,
}

const KEY_FILES: [&str; 3] = ["vrf.key", "head.key", "smt.key"];

/// The pinned configuration file a member writes in its data directory (the public
/// configuration's canonical encoding: what clients pin).
pub const CONFIG_FILE: &str = "config.bin";

/// Writes `data_dir/config.bin` (public; what clients pin), atomically.
pub fn write_public_config(
    data_dir: &Path,
    public: &candor_core::signed::PublicConfig,
) -> Result<()> {
    let path = data_dir.join(CONFIG_FILE);
    let tmp = data_dir.join("config.bin.tmp");
    fs::write(&tmp, public.encode()).map_err(io("cannot write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("cannot write", &path))?;
    Ok(())
}

/// Directory of the key files.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Refuses a secret file that group or others may read or write.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(io("cannot read", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "secret file {} is accessible by group/others (mode {:o}); \
             fix it with: chmod 600 {}",
            path.display(),
            mode,
            path.display()
        );
    }
    Ok(())
}

/// Creates `path` with mode 0600 holding `contents`; fails if it exists.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("cannot create", path))?;
    f.write_all(contents).map_err(io("cannot write", path))?;
    f.sync_all().map_err(io("cannot write", path))?;
    Ok(())
}

/// Reads a private file after checking its permissions.
pub fn read_private(path: &Path) -> Result<Zeroizing<String>> {
    check_private(path)?;
    let s = fs::read_to_string(path).map_err(io("cannot read", path))?;
    Ok(Zeroizing::new(s))
}

fn read_seed(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let text = read_private(path)?;
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut()).map_err(|e| {
        NodeError::Keys(format!(
            "{}: expected 64 hex characters: {e}",
            path.display()
        ))
    })?;
    Ok(seed)
}

fn hex_line(b: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    let mut v = hex::encode(b).into_bytes();
    v.push(b'\n');
    Zeroizing::new(v)
}

/// Creates a directory (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io("cannot set the permissions of", dir))?;
    }
    Ok(())
}

/// Loads the keys from `data_dir/keys`, generating all three on first start.
/// Returns the keys and whether they were just generated.
pub fn load_or_generate(data_dir: &Path) -> Result<(Keys, bool)> {
    load_or_generate_in(&keys_dir(data_dir))
}

/// `candor keygen`: creates the three key files in `dir`; refuses existing ones.
pub fn generate_in(dir: &Path) -> Result<Keys> {
    if KEY_FILES.iter().any(|f| dir.join(f).exists()) {
        bail!(
            "{} already holds key files; refusing to overwrite a deployment's keys",
            dir.display()
        );
    }
    Ok(load_or_generate_in(dir)?.0)
}

/// Loads the keys from `dir`; all three files must exist (a cluster member never
/// generates keys: every member must hold the same ones).
pub fn load_existing(dir: &Path) -> Result<Keys> {
    let missing: Vec<String> = KEY_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "key files missing: {}; create the deployment's keys once with `candor keygen --dir DIR` and copy DIR to every member",
            missing.join(", ")
        );
    }
    Ok(load_or_generate_in(dir)?.0)
}

/// Loads only the VRF secret from `dir` (an API node of a shared-state deployment needs
/// no signing key: give it `vrf.key` alone).
pub fn load_vrf(dir: &Path) -> Result<VrfSecretKey> {
    let path = dir.join(KEY_FILES[0]);
    if !path.exists() {
        bail!(
            "{} is missing: the API role needs the deployment's VRF key (`candor keygen \
             --dir DIR` writes it)",
            path.display()
        );
    }
    Ok(VrfSecretKey::from_bytes(&*read_seed(&path)?))
}

fn load_or_generate_in(dir: &Path) -> Result<(Keys, bool)> {
    let dir = dir.to_path_buf();
    ensure_private_dir(&dir)?;
    let paths: Vec<PathBuf> = KEY_FILES.iter().map(|f| dir.join(f)).collect();
    let present: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
    let generated = if present.iter().all(|p| !p) {
        let keys = Keys {
            vrf: VrfSecretKey::generate(),
            head: SigningKeyPair::generate(),
            smt: SigningKeyPair::generate(),
        };
        write_private(&paths[0], &hex_line(&keys.vrf.to_bytes()))?;
        write_private(&paths[1], &hex_line(&keys.head.to_seed()))?;
        write_private(&paths[2], &hex_line(&keys.smt.to_seed()))?;
        true
    } else if present.iter().all(|p| *p) {
        false
    } else {
        let missing: Vec<String> = paths
            .iter()
            .zip(&present)
            .filter(|(_, p)| !**p)
            .map(|(path, _)| path.display().to_string())
            .collect();
        bail!(
            "key files missing: {}; restore them from a backup (generating a new key \
             would change the deployment's configuration)",
            missing.join(", ")
        );
    };
    let keys = Keys {
        vrf: VrfSecretKey::from_bytes(&*read_seed(&paths[0])?),
        head: SigningKeyPair::from_seed(&*read_seed(&paths[1])?),
        smt: SigningKeyPair::from_seed(&*read_seed(&paths[2])?),
    };
    Ok((keys, generated))
}

/// The signing keys of every version ≥ 2 in `dir` (`head-N.key` and `smt-N.key`,
/// written by [`generate_version`]), by version. Versions must be consecutive from 2
/// and each must have both files.
pub fn load_versions(dir: &Path) -> Result<Vec<crate::KeyVersionPair>> {
    let mut out = Vec::new();
    for version in 2u32.. {
        let head = dir.join(format!("head-{version}.key"));
        let smt = dir.join(format!("smt-{version}.key"));
        match (head.exists(), smt.exists()) {
            (false, false) => break,
            (true, true) => out.push(crate::KeyVersionPair {
                version,
                head: std::sync::Arc::new(SigningKeyPair::from_seed(&*read_seed(&head)?)),
                smt: std::sync::Arc::new(SigningKeyPair::from_seed(&*read_seed(&smt)?)),
            }),
            _ => bail!(
                "key version {version} is incomplete in {}: head-{version}.key and \
                 smt-{version}.key go together",
                dir.display()
            ),
        }
    }
    let next = out.len() as u32 + 2;
    if dir.join(format!("head-{}.key", next + 1)).exists() {
        bail!(
            "key versions in {} skip version {next}: versions are consecutive from 2",
            dir.display()
        );
    }
    Ok(out)
}

/// `candor keys rotate`: writes the next key version's `head-N.key` and `smt-N.key`
/// into `dir` (which must hold the deployment's keys) and returns them.
pub fn generate_version(dir: &Path) -> Result<crate::KeyVersionPair> {
    if !dir.join(KEY_FILES[1]).exists() {
        bail!(
            "{} holds no deployment keys (head.key): give the key directory of a member",
            dir.display()
        );
    }
    let version = load_versions(dir)?.len() as u32 + 2;
    let head = SigningKeyPair::generate();
    let smt = SigningKeyPair::generate();
    write_private(
        &dir.join(format!("head-{version}.key")),
        &hex_line(&head.to_seed()),
    )?;
    write_private(
        &dir.join(format!("smt-{version}.key")),
        &hex_line(&smt.to_seed()),
    )?;
    Ok(crate::KeyVersionPair {
        version,
        head: std::sync::Arc::new(head),
        smt: std::sync::Arc::new(smt),
    })
}

/// Loads the dev bearer token, generating it with `generate` on first start.
pub fn load_or_generate_token(
    data_dir: &Path,
    generate: impl FnOnce() -> String,
) -> Result<(Zeroizing<String>, bool)> {
    let path = data_dir.join("dev-token");
    if path.exists() {
        let t = read_private(&path)?;
        let token = Zeroizing::new(t.trim().to_owned());
        if token.is_empty() {
            bail!(
                "{} is empty; delete it to generate a new token",
                path.display()
            );
        }
        return Ok((token, false));
    }
    let token = Zeroizing::new(generate());
    let mut line = token.as_bytes().to_vec();
    line.push(b'\n');
    write_private(&path, &line)?;
    Ok((token, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_reload_and_refuse_open_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, new1) = load_or_generate(dir.path()).unwrap();
        assert!(new1);
        let (k2, new2) = load_or_generate(dir.path()).unwrap();
        assert!(!new2);
        assert_eq!(k1.vrf.public_key(), k2.vrf.public_key());
        assert_eq!(k1.head.public_key(), k2.head.public_key());
        assert_eq!(k1.smt.public_key(), k2.smt.public_key());
        for f in KEY_FILES {
            let m = fs::metadata(keys_dir(dir.path()).join(f)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        let p = keys_dir(dir.path()).join("head.key");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_generate(dir.path()).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(keys_dir(dir.path()).join("smt.key")).unwrap();
        let e = load_or_generate(dir.path()).err().unwrap().to_string();
        assert!(e.contains("missing"), "{e}");

        let (t1, g1) = load_or_generate_token(dir.path(), || "t0k3n".into()).unwrap();
        let (t2, g2) = load_or_generate_token(dir.path(), || "t0k3n".into()).unwrap();
        assert!(g1 && !g2);
        assert_eq!(*t1, *t2);
    }
}
