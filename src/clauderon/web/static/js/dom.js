// Building the page from data. Everything shown is text: strings become text nodes and
// attributes are set one by one, never parsed as HTML (no innerHTML anywhere).

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

// A link inside the app (hash routes only: nothing from the API ever becomes an href).
export function route(...parts) {
  return "#/" + parts.map(encodeURIComponent).join("/");
}

export function age(timestamp, now = Date.now()) {
  if (!timestamp) return "-";
  let stamp = Date.parse(timestamp.endsWith("Z") || /[+-]\d\d:\d\d$/.test(timestamp) ? timestamp : timestamp + "Z");
  if (Number.isNaN(stamp)) return "-";
  const seconds = Math.max(0, Math.floor((now - stamp) / 1000));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit}`;
  }
  return `${seconds}s`;
}

export function basename(path) {
  const parts = String(path || "").split("/").filter(Boolean);
  return parts.length ? parts[parts.length - 1] : String(path || "");
}
