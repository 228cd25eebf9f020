// Canonical JSON and unpadded base64url, byte-identical to tenderhall/canonical.py.
//
// Canonical JSON (a subset of RFC 8785): object keys sorted by Unicode code point, no
// insignificant whitespace, UTF-8, and no floats at all (money travels as decimal strings).
// Integers beyond 2**53 - 1 are refused, as in Python, rather than silently disagreeing.

const encoder = new TextEncoder();

function compareCodePoints(a, b) {
  // Python sorts str by code point; JS's default sort compares UTF-16 units, which differs
  // for characters above U+FFFF. Compare code point by code point instead.
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done === y.done ? 0 : x.done ? -1 : 1;
    const cx = x.value.codePointAt(0);
    const cy = y.value.codePointAt(0);
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

function serialise(value, path) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new TypeError(`${path}: floats are not allowed; use a decimal string`);
    if (!Number.isSafeInteger(value)) throw new TypeError(`${path}: integer ${value} is outside the safe range`);
    return String(value === 0 ? 0 : value);
  }
  if (Array.isArray(value)) return `[${value.map((v, i) => serialise(v, `${path}[${i}]`)).join(",")}]`;
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const keys = Object.keys(value).sort(compareCodePoints);
    const body = keys
      .filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${serialise(value[k], `${path}.${k}`)}`);
    return `{${body.join(",")}}`;
  }
  throw new TypeError(`${path}: ${typeof value} is not a JSON value`);
}

/** Canonical JSON text of `value`; throws TypeError on floats, unsafe integers, non-plain objects. */
export function canonicalJsonText(value) {
  return serialise(value, "$");
}

/** Canonical JSON as UTF-8 bytes: what is hashed and signed. */
export function canonicalJson(value) {
  return encoder.encode(canonicalJsonText(value));
}

/** Unpadded base64url (RFC 4648 §5) of bytes (Uint8Array, ArrayBuffer or a view). */
export function b64url(data) {
  const bytes = data instanceof Uint8Array ? data : ArrayBuffer.isView(data)
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
  let binary = "";
  const step = 0x8000; // keep String.fromCharCode's argument list small
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Decode unpadded base64url; throws TypeError on padding, '+', '/', whitespace or bad length. */
export function b64urlDecode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new TypeError("not unpadded base64url");
  }
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** Lowercase hex of bytes. */
export function hex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}
