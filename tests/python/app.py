"""A prism receiver written in Python, built with componentize-py.

It proves the contract is language-neutral: it reacts to price changes and
sends a small JSON document, rejects products without a price, and logs
through the host.
"""

import json

import wit_world
from wit_world.imports import config, log, types
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def accepts(self, change: types.Change) -> bool:
        return any(p == "" or p.startswith("/prices") for p in change.changed_paths)

    def format(self, change: types.Change) -> list[types.Message]:
        if change.new_image is None:
            body = {"sku": change.key, "deleted": True}
        else:
            doc = json.loads(change.new_image)
            market = config.get("market") or "DE"
            price = doc.get("prices", {}).get(market)
            if price is None:
                raise Err(types.FormatError_Reject(f"{change.key}: no {market} price"))
            body = {"sku": change.key, "market": market, "amount": str(price["amount"])}
        log.log(log.Level.INFO, "formatted", [("key", change.key)])
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return [types.Message(data, "application/json", None, [("lang", "python")])]

    def format_batch(self, changes: list[types.Change]) -> list[types.Message]:
        out: list[types.Message] = []
        for c in changes:
            out.extend(self.format(c))
        return out
