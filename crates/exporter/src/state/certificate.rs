//! Whether the TLS certificate files last loaded: the web module loads them (at start, on a
//! reload, when they change), State keeps the outcome so that `/metrics` can show it
//! (`healthlake_exporter_tls_certificate_last_load_successful`).

use std::sync::atomic::{AtomicU8, Ordering};

/// Whether the last load of the TLS certificate files worked (absent without TLS).
#[derive(Debug, Default)]
pub struct CertificateStatus {
    /// 0: no TLS; 1: the last load failed (the previous certificate stays in service); 2: it worked.
    value: AtomicU8,
}

impl CertificateStatus {
    pub fn set(&self, loaded: Option<bool>) {
        let value = match loaded {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.value.store(value, Ordering::Relaxed);
    }

    /// `None` without TLS, else whether the last load of the files worked.
    pub fn get(&self) -> Option<bool> {
        match self.value.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v == 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tls_failed_and_loaded_read_back() {
        let status = CertificateStatus::default();
        assert_eq!(status.get(), None);
        for loaded in [Some(false), Some(true), None] {
            status.set(loaded);
            assert_eq!(status.get(), loaded);
        }
    }
}
