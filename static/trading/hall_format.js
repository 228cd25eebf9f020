// How the opening hall shows values: money in yuan, times in the centre's zone, countdowns.
//
// Pure functions with no DOM, so the page and its tests agree on every rendering. Money
// arrives as decimal strings and is never turned into a float (a bid price must read out
// exactly as the bidder sealed it).

/** `template` with each {name} replaced by String(values[name]); unknown names are left as they are. */
export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/**
 * '98,765,432.10' from the decimal string '98765432.10' (or an integer); digit groups of
 * three, two decimals padded. Text that is not a decimal number is returned as given.
 */
export function yuan(value) {
  if (value === null || value === undefined || value === "") return "";
  const text = String(value).trim();
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) return text;
  const [, sign, whole, frac = ""] = match;
  const grouped = whole.replace(/^0+(?=\d)/, "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}${grouped}.${(frac + "00").slice(0, Math.max(2, frac.length))}`;
}

function zoneParts(date, zone) {
  const format = new Intl.DateTimeFormat("en-GB", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const parts = {};
  for (const { type, value } of format.formatToParts(date)) parts[type] = value;
  return parts;
}

function offsetText(date, zone) {
  // Minutes east of UTC for `zone` at `date`, as "+08:00" (the pages' "(UTC+08:00)" suffix).
  const p = zoneParts(date, zone);
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  const minutes = Math.round((asUtc - Math.floor(date.getTime() / 1000) * 1000) / 60000);
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/**
 * '2026-11-25 08:27:29 (UTC+08:00)' for ISO 8601 text in `zone` (an IANA name), matching the
 * server's `when` filter; '' for null. An unknown zone falls back to the browser's own.
 */
export function when(iso, zone) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  let useZone = zone;
  try {
    zoneParts(date, useZone);
  } catch {
    useZone = undefined;
  }
  const p = zoneParts(date, useZone);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} (UTC${offsetText(date, useZone)})`;
}

/** 'HH:MM:SS' of a duration in milliseconds (hours grow past 24; negative counts as zero). */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  return [hours, minutes, seconds].map((n) => String(n).padStart(2, "0")).join(":");
}

/** Digit-grouped byte count. */
export function bytes(n) {
  return Number(n ?? 0).toLocaleString("en-US");
}

/** ISO 8601 (UTC) from an <input type="datetime-local"> value, read in the browser's zone as the tender form does; null if empty. */
export function localToIso(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}
