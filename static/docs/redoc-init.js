// Starts ReDoc on this server's OpenAPI document. A file rather than an inline
// script, which the Content-Security-Policy refuses. ReDoc's <style> elements carry
// the nonce that this page's policy allows. Search is off: it runs in a blob: Web
// Worker, which the policy refuses (and the API is small).
//
// ReDoc 2 shows Redocly's logo from their CDN in its sidebar. This page asks no other
// site for anything (the policy would refuse it, and offline it fails), so such an
// image is treated as one that failed to load, which ReDoc then leaves out.
function isElsewhere(value) {
  const url = new URL(String(value), location.href);
  return url.origin !== location.origin && url.protocol !== "data:";
}

function failLater(image) {
  queueMicrotask(() => image.dispatchEvent(new Event("error")));
}

const srcProperty = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
Object.defineProperty(HTMLImageElement.prototype, "src", {
  ...srcProperty,
  set(value) {
    if (isElsewhere(value)) failLater(this);
    else srcProperty.set.call(this, value);
  },
});
const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function setAttributeHere(name, value) {
  if (this instanceof HTMLImageElement && String(name).toLowerCase() === "src" && isElsewhere(value)) {
    failLater(this);
    return;
  }
  setAttribute.call(this, name, value);
};

const root = document.getElementById("redoc");
Redoc.init(root.dataset.openapiUrl, { nonce: root.dataset.styleNonce, disableSearch: true }, root);
