//! What every loaded component keeps, receiver or mapper alike.

use std::sync::Arc;

use prism_types::digest::Digest;

use crate::LoadSource;
use crate::ticker::EpochTicker;

/// A compiled, checked, pre-linked component (`P`: its world's pre-instance).
pub(crate) struct Loaded<P> {
    /// The digest of its `.wasm`.
    pub(crate) digest: Digest,
    /// Ready to instantiate.
    pub(crate) pre: P,
    /// Compiled now or loaded from the compile cache.
    pub(crate) source: LoadSource,
    /// Shared with the engine: a component that outlives the engine value
    /// still has its time budget enforced.
    _ticker: Arc<EpochTicker>,
}

impl<P> Loaded<P> {
    pub(crate) fn new(
        digest: Digest,
        pre: P,
        source: LoadSource,
        ticker: Arc<EpochTicker>,
    ) -> Self {
        Self {
            digest,
            pre,
            source,
            _ticker: ticker,
        }
    }
}
