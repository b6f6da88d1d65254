//! The local KEK provider runs the shared provider conformance suite.

use std::sync::Arc;

use async_trait::async_trait;
use sealbox_core::{KeyProvider, ProviderError};
use sealbox_local::LocalKek;
use sealbox_testkit::conformance::Harness;

struct Local {
    a: Arc<LocalKek>,
    b: Arc<LocalKek>,
}

async fn harness() -> Local {
    Local {
        a: Arc::new(LocalKek::generate("conformance-a").expect("kek")),
        b: Arc::new(LocalKek::generate("conformance-b").expect("kek")),
    }
}

#[async_trait]
impl Harness for Local {
    fn keks(&self) -> [Arc<dyn KeyProvider>; 2] {
        [self.a.clone(), self.b.clone()]
    }
    async fn missing(&self) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        let dir = tempfile::tempdir().expect("tempdir");
        LocalKek::from_file("absent", dir.path().join("absent.kek"))
            .map(|k| Arc::new(k) as Arc<dyn KeyProvider>)
    }
    async fn rotate(&self) {
        self.a.rotate().expect("rotate");
    }
    fn versioned(&self) -> bool {
        true
    }
}

sealbox_testkit::conformance_tests!(harness);
