// A prism receiver in JavaScript (prism:receiver@0.2.0), built with
// @bytecodealliance/componentize-js. With stdio, random, clocks, http and
// fetch-event disabled it imports no WASI at all, only the contract.
//
// It sends a small JSON price document when a product's prices change,
// rejects products without a price in its market, and logs through the host.
// Build: see README.md beside it.

import { newImage } from "prism:receiver/images@0.2.0";
import { emit } from "prism:receiver/output@0.2.0";
import { get } from "prism:receiver/config@0.2.0";
import { log } from "prism:receiver/log@0.2.0";

const encoder = new TextEncoder();

// The filter sees only the change's key, kind and changed paths: no image
// is copied into the plugin for a change it skips.
export function accepts(change) {
  return change.changedPaths.some((p) => p === "" || p.startsWith("/prices"));
}

function body(change) {
  if (change.kind === "remove") {
    return { deleted: true, sku: change.key };
  }
  // Read once per change: every call copies the whole document.
  const doc = JSON.parse(newImage(change.id));
  const market = get("market") ?? "DE";
  const price = doc.prices?.[market];
  if (price === undefined) {
    throw { tag: "reject", val: `${change.key}: no ${market} price` };
  }
  return { amount: String(price.amount), market, sku: change.key };
}

export function format(change) {
  const doc = body(change);
  log("info", "formatted", [["key", change.key]]);
  emit({
    body: encoder.encode(JSON.stringify(doc)),
    contentType: "application/json",
    group: undefined,
    attributes: [["lang", "javascript"]],
  });
}

export function formatBatch(changes) {
  for (const change of changes) {
    format(change);
  }
}
