//! `prism:receiver@0.2.0` (`wit/v0.2/receiver.wit`), the newest: a change
//! arrives without its images (the plugin reads them through `images` when
//! it needs them) and messages are emitted one at a time through `output`.

use crate::world::{Contract, World};

/// The receiver world of 0.2: `log`, `config`, `images`, `output` and
/// deny-all WASI.
pub const RECEIVER: World = World {
    name: "prism:receiver/receiver@0.2.0",
    granted: &[
        "prism:receiver/log@0.2.",
        "prism:receiver/config@0.2.",
        "prism:receiver/types@0.2.",
        "prism:receiver/images@0.2.",
        "prism:receiver/output@0.2.",
    ],
    exports: &[
        ("accepts", "func(change: change) -> bool"),
        ("format", "func(change: change) -> result<_, format-error>"),
        (
            "format-batch",
            "func(changes: list<change>) -> result<_, format-error>",
        ),
    ],
    grants: "prism:receiver/{log,config,images,output} and deny-all WASI 0.2",
    contract: Some(Contract::V0_2),
};
