//! Secrets a plugin generates (passwords, tokens), from the sandbox's
//! cryptographically secure random source (`wasi:random`).
//!
//! Pair them with [`crate::Response::child_once`], so a generated secret is
//! created once and never replaced by a new one on a later reconcile.

/// Letters and digits: safe in URLs, shells and config files.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A random password of `length` letters and digits. An error only when the
/// host offers no random source.
pub fn password(length: usize) -> Result<String, crate::Error> {
    let mut out = String::with_capacity(length);
    let mut buffer = [0u8; 64];
    while out.len() < length {
        getrandom::fill(&mut buffer).map_err(|e| crate::Error::fatal(format!("no random source: {e}")))?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        for byte in buffer.iter().filter(|b| usize::from(**b) < limit) {
            if out.len() == length {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_have_the_length_and_alphabet_asked_for_and_differ() {
        let a = super::password(24).unwrap();
        let b = super::password(24).unwrap();
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
