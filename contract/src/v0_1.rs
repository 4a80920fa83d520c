//! `prism:receiver@0.1.0` (`wit/receiver.wit`, `wit/mapper.wit`): images
//! passed whole to every call, messages returned as one list. Deprecated
//! for receivers, still served; the mapper world is at this version.

use crate::world::{Contract, World};

/// The receiver world: `log`, `config` and deny-all WASI.
pub const RECEIVER: World = World {
    name: "prism:receiver/receiver@0.1.0",
    granted: &[
        "prism:receiver/log@0.1.",
        "prism:receiver/config@0.1.",
        "prism:receiver/types@0.1.",
    ],
    exports: &[
        ("accepts", "func(change: change) -> bool"),
        (
            "format",
            "func(change: change) -> result<list<message>, format-error>",
        ),
        (
            "format-batch",
            "func(changes: list<change>) -> result<list<message>, format-error>",
        ),
    ],
    grants: "prism:receiver/{log,config} and deny-all WASI 0.2",
    contract: Some(Contract::V0_1),
};

/// The mapper world: the receiver's grants plus read access to the shadow
/// tables and the model.
pub const MAPPER: World = World {
    name: "prism:receiver/mapper@0.1.0",
    granted: &[
        "prism:receiver/log@0.1.",
        "prism:receiver/config@0.1.",
        "prism:receiver/types@0.1.",
        "prism:receiver/mapping@0.1.",
        "prism:receiver/shadow@0.1.",
        "prism:receiver/model@0.1.",
    ],
    exports: &[(
        "map-change",
        "func(change: shadow-change) -> result<list<model-write>, map-error>",
    )],
    grants: "prism:receiver/{log,config,shadow,model} and deny-all WASI 0.2",
    contract: None,
};
