"""A prism receiver in Python (prism:receiver@0.2.0), built with componentize-py.

It sends a small JSON price document when a product's prices change, rejects
products without a price in its market, and logs through the host. The
filter sees only the change's key, kind and changed paths, so no image is
copied into the plugin for a change it skips. Build: see README.md beside it.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, images, log, output, types


def _body(change: types.Change) -> dict:
    if change.kind == types.ChangeKind.REMOVE:
        return {"deleted": True, "sku": change.key}
    # Read once per change: every call copies the whole document.
    doc = json.loads(images.new_image(change.id))
    market = config.get("market") or "DE"
    price = doc.get("prices", {}).get(market)
    if price is None:
        raise Err(types.FormatError_Reject(f"{change.key}: no {market} price"))
    return {"amount": str(price["amount"]), "market": market, "sku": change.key}


class WitWorld(wit_world.WitWorld):
    def accepts(self, change: types.Change) -> bool:
        return any(p == "" or p.startswith("/prices") for p in change.changed_paths)

    def format(self, change: types.Change) -> None:
        body = _body(change)
        log.log(log.Level.INFO, "formatted", [("key", change.key)])
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        output.emit(types.Message(data, "application/json", None, [("lang", "python")]))

    def format_batch(self, changes: list[types.Change]) -> None:
        for c in changes:
            self.format(c)
