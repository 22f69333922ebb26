// Warden's console formatter for the QuickJS driver: a small take on Node's util.format /
// util.inspect (depth 2, 100 array items, 80-column break, Node-style array grouping).
// Evaluates to a factory; driver.c calls it with (promiseState, promiseResult) and keeps the
// returned format(...args) function. It is compiled only when something non-trivial is
// printed, so `console.log("text")` never pays for it.
(function (promiseState, promiseResult) {
  "use strict";
  const MAX_DEPTH = 2;
  const MAX_ITEMS = 100;
  const BREAK = 80;
  const COMPACT = 3;
  const IDENT = /^[A-Za-z_$][\w$]*$/;
  const fnToString = Function.prototype.toString;
  const objToString = Object.prototype.toString;
  const getProto = Object.getPrototypeOf;
  const ownDesc = Object.getOwnPropertyDescriptor;

  function quote(s) {
    let q = "'";
    if (s.includes("'")) {
      if (!s.includes('"')) q = '"';
      else if (!s.includes("`") && !s.includes("${")) q = "`";
    }
    let out = "";
    for (const ch of s) {
      const c = ch.codePointAt(0);
      if (ch === q || ch === "\\") out += "\\" + ch;
      else if (ch === "\n") out += "\\n";
      else if (ch === "\t") out += "\\t";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\b") out += "\\b";
      else if (ch === "\f") out += "\\f";
      else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
        out += "\\x" + c.toString(16).toUpperCase().padStart(2, "0");
      } else if (c >= 0xd800 && c <= 0xdfff) out += "\\u" + c.toString(16); // lone surrogate
      else out += ch;
    }
    return q + out + q;
  }

  function key(k) {
    if (typeof k === "symbol") return "[" + k.toString() + "]";
    return IDENT.test(k) ? k : quote(k);
  }

  function primitive(v) {
    switch (typeof v) {
      case "string": return quote(v);
      case "number": return Object.is(v, -0) ? "-0" : String(v);
      case "bigint": return String(v) + "n";
      case "symbol": return v.toString();
      case "undefined": return "undefined";
      case "boolean": return String(v);
      default: return v === null ? "null" : undefined;
    }
  }

  function safe(f, fallback) {
    try { return f(); } catch { return fallback; }
  }

  function ctorName(o) {
    let p = safe(() => getProto(o), null);
    for (let n = 0; p !== null && n < 100; n++) {
      const d = safe(() => ownDesc(p, "constructor"), undefined);
      if (d && typeof d.value === "function" && typeof d.value.name === "string" && d.value.name) {
        return d.value.name;
      }
      p = safe(() => getProto(p), null);
    }
    return null;
  }

  function fnBase(f) {
    const name = safe(() => f.name, "");
    const src = safe(() => fnToString.call(f), "");
    if (/^class\b/.test(src)) return "[class " + (name || "(anonymous)") + "]";
    let kind = "Function";
    const tag = safe(() => objToString.call(f), "");
    if (tag === "[object AsyncFunction]") kind = "AsyncFunction";
    else if (tag === "[object GeneratorFunction]") kind = "GeneratorFunction";
    else if (tag === "[object AsyncGeneratorFunction]") kind = "AsyncGeneratorFunction";
    return name ? "[" + kind + ": " + name + "]" : "[" + kind + " (anonymous)]";
  }

  function errorText(e, bare) {
    const name = safe(() => String(e.name), "Error");
    const message = safe(() => String(e.message), "");
    const head = message ? name + ": " + message : name;
    let stack = safe(() => e.stack, undefined);
    if (typeof stack !== "string" || stack === "") return bare ? head : "[" + head + "]";
    stack = stack.replace(/\n+$/, "");
    if (!stack.startsWith(head)) stack = head + "\n" + stack;
    return stack;
  }

  function isBelowBreak(output, start, base) {
    let total = output.length + start;
    if (total + output.length > BREAK) return false;
    for (const s of output) {
      total += s.length;
      if (total > BREAK) return false;
    }
    return base === "" || !base.includes("\n");
  }

  function groupArray(output, indent, value, hasMore) {
    let total = 0;
    let maxLen = 0;
    const n = hasMore ? output.length - 1 : output.length;
    const lens = [];
    for (let i = 0; i < n; i++) {
      const len = output[i].length;
      lens.push(len);
      total += len + 2;
      if (maxLen < len) maxLen = len;
    }
    const actualMax = maxLen + 2;
    if (actualMax * 3 + indent < BREAK && (total / actualMax > 5 || maxLen <= 6)) {
      const averageBias = Math.sqrt(actualMax - total / output.length);
      const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
      const columns = Math.min(
        Math.round(Math.sqrt(2.5 * biasedMax * n) / biasedMax),
        Math.floor((BREAK - indent) / actualMax),
        COMPACT * 4,
        15,
      );
      if (columns <= 1) return output;
      const widths = [];
      for (let i = 0; i < columns; i++) {
        let w = 0;
        for (let j = i; j < n; j += columns) if (lens[j] > w) w = lens[j];
        widths.push(w + 2);
      }
      let numeric = true;
      for (let i = 0; i < n; i++) {
        const t = typeof value[i];
        if (t !== "number" && t !== "bigint") { numeric = false; break; }
      }
      const rows = [];
      for (let i = 0; i < n; i += columns) {
        const max = Math.min(i + columns, n);
        let line = "";
        let j = i;
        for (; j < max - 1; j++) {
          const cell = output[j] + ", ";
          line += numeric ? cell.padStart(widths[j - i]) : cell.padEnd(widths[j - i]);
        }
        line += numeric ? output[j].padStart(widths[j - i] - 2) : output[j];
        rows.push(line);
      }
      if (hasMore) rows.push(output[output.length - 1]);
      return rows;
    }
    return output;
  }

  // Runs inside inspect()'s indent bump (children sit 2 deeper): this level is indent - 2.
  function reduce(st, output, base, braces, isArray, level, value, hasMore) {
    const indent = st.indent - 2;
    const entries = output.length;
    if (isArray && entries > 6) output = groupArray(output, indent, value, hasMore);
    if (st.current - level < COMPACT && entries === output.length) {
      const start = output.length + indent + braces[0].length + base.length + 10;
      if (isBelowBreak(output, start, base)) {
        const joined = output.join(", ");
        if (!joined.includes("\n")) {
          return (base ? base + " " : "") + braces[0] + " " + joined + " " + braces[1];
        }
      }
    }
    const ind = "\n" + " ".repeat(indent);
    return (base ? base + " " : "") + braces[0] + ind + "  " +
      output.join("," + ind + "  ") + ind + braces[1];
  }

  function propEntries(st, v, level, skipIndex) {
    const out = [];
    const keys = safe(() => Reflect.ownKeys(v), []);
    for (const k of keys) {
      if (skipIndex && typeof k === "string" && /^(0|[1-9]\d*)$/.test(k)) continue;
      const d = safe(() => ownDesc(v, k), undefined);
      if (!d || !d.enumerable) continue;
      let shown;
      if (d.get && d.set) shown = "[Getter/Setter]";
      else if (d.get) shown = "[Getter]";
      else if (d.set) shown = "[Setter]";
      else shown = inspect(st, d.value, level + 1);
      out.push(key(k) + ": " + shown);
    }
    return out;
  }

  function inspect(st, v, level) {
    const p = primitive(v);
    if (p !== undefined) return p;
    if (st.seen.includes(v)) return "[Circular *1]";
    if (typeof v === "function") {
      const base = fnBase(v);
      if (level > MAX_DEPTH) return base;
      st.seen.push(v);
      st.indent += 2;
      try {
        const props = propEntries(st, v, level, false);
        return props.length ? reduce(st, props, base, ["{", "}"], false, level, v, false) : base;
      } finally {
        st.indent -= 2;
        st.seen.pop();
      }
    }
    if (v instanceof Error) {
      let text = errorText(v);
      if (level > 0) text = text.split("\n").join("\n" + " ".repeat(st.indent));
      return text;
    }
    const name = ctorName(v);
    const isArr = Array.isArray(v);
    if (level > MAX_DEPTH) {
      return isArr ? "[Array]" : "[" + (name || "Object") + "]";
    }
    st.seen.push(v);
    st.current = level;
    const saved = st.indent;
    st.indent += 2;
    try {
      return body(st, v, level, name, isArr);
    } finally {
      st.indent = saved;
      st.seen.pop();
    }
  }

  function listItems(st, v, len, level, output) {
    let holes = 0;
    const shown = Math.min(len, MAX_ITEMS);
    for (let i = 0; i < shown; i++) {
      if (!(i in v)) { holes++; continue; }
      if (holes) { output.push("<" + holes + " empty item" + (holes > 1 ? "s" : "") + ">"); holes = 0; }
      output.push(inspect(st, v[i], level + 1));
    }
    if (holes) output.push("<" + holes + " empty item" + (holes > 1 ? "s" : "") + ">");
    if (len > shown) {
      const more = len - shown;
      output.push("... " + more + " more item" + (more > 1 ? "s" : ""));
      return true;
    }
    return false;
  }

  function body(st, v, level, name, isArr) {
    const tag = safe(() => objToString.call(v), "[object Object]").slice(8, -1);
    if (isArr) {
      const output = [];
      const hasMore = listItems(st, v, v.length, level, output);
      const extra = propEntries(st, v, level, true);
      const prefix = name === "Array" ? "" : (name || "[Array: null prototype]") + "(" + v.length + ")";
      if (output.length === 0 && extra.length === 0) return (prefix ? prefix + " " : "") + "[]";
      return reduce(st, output.concat(extra), prefix, ["[", "]"], extra.length === 0, level, v, hasMore);
    }
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const output = [];
      const hasMore = listItems(st, v, v.length, level, output);
      const prefix = (name || tag) + "(" + v.length + ")";
      if (output.length === 0) return prefix + " []";
      return reduce(st, output, prefix, ["[", "]"], true, level, v, hasMore);
    }
    if (v instanceof Map) {
      const output = [];
      let i = 0;
      for (const [k, val] of v) {
        if (i++ >= MAX_ITEMS) { output.push("... " + (v.size - MAX_ITEMS) + " more items"); break; }
        output.push(inspect(st, k, level + 1) + " => " + inspect(st, val, level + 1));
      }
      const prefix = (name || "Map") + "(" + v.size + ")";
      if (output.length === 0) return prefix + " {}";
      return reduce(st, output, prefix, ["{", "}"], false, level, v, false);
    }
    if (v instanceof Set) {
      const output = [];
      let i = 0;
      for (const val of v) {
        if (i++ >= MAX_ITEMS) { output.push("... " + (v.size - MAX_ITEMS) + " more items"); break; }
        output.push(inspect(st, val, level + 1));
      }
      const prefix = (name || "Set") + "(" + v.size + ")";
      if (output.length === 0) return prefix + " {}";
      return reduce(st, output, prefix, ["{", "}"], false, level, v, false);
    }
    let base = "";
    if (v instanceof Date) {
      base = safe(() => (isNaN(v.getTime()) ? "Invalid Date" : v.toISOString()), "Date");
    } else if (v instanceof RegExp) {
      base = safe(() => String(v), "/(regexp)/");
    } else if (v instanceof Promise) {
      const state = promiseState(v);
      const output = state === 0 ? ["<pending>"]
        : state === 2 ? ["<rejected> " + inspect(st, promiseResult(v), level + 1)]
        : [inspect(st, promiseResult(v), level + 1)];
      return reduce(st, output.concat(propEntries(st, v, level, false)), "Promise",
        ["{", "}"], false, level, v, false);
    } else if (v instanceof WeakMap || v instanceof WeakSet) {
      return (name || tag) + " { <items unknown> }";
    } else if (v instanceof ArrayBuffer) {
      const bytes = new Uint8Array(v, 0, Math.min(v.byteLength, 50));
      let hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
      if (v.byteLength > 50) hex += " ... " + (v.byteLength - 50) + " more bytes";
      return "ArrayBuffer { [Uint8Contents]: <" + hex + ">, byteLength: " + v.byteLength + " }";
    } else if (tag === "Number" || tag === "String" || tag === "Boolean" || tag === "BigInt" ||
               tag === "Symbol") {
      const inner = safe(() => v.valueOf(), undefined);
      base = "[" + tag + ": " + (primitive(inner) ?? "?") + "]";
    }
    const output = propEntries(st, v, level, base !== "" && tag === "String");
    if (base) {
      if (output.length === 0) return base;
      return reduce(st, output, base, ["{", "}"], false, level, v, false);
    }
    let prefix = "";
    if (name === null) prefix = "[Object: null prototype]";
    else if (name !== "Object") prefix = name;
    const toStringTag = safe(() => v[Symbol.toStringTag], undefined);
    if (typeof toStringTag === "string" && toStringTag !== "" && toStringTag !== name) {
      prefix = (prefix || "Object") + " [" + toStringTag + "]";
    }
    if (output.length === 0) return prefix ? prefix + " {}" : "{}";
    return reduce(st, output, prefix, ["{", "}"], false, level, v, false);
  }

  function top(v) {
    return inspect({ seen: [], indent: 0, current: 0 }, v, 0);
  }

  function formatNumber(n) {
    return Object.is(n, -0) ? "-0" : String(n);
  }

  function formatOne(spec, a) {
    switch (spec) {
      case "s":
        if (typeof a === "string") return a;
        if (typeof a === "bigint") return a + "n";
        if (typeof a === "symbol") return String(a);
        if (typeof a === "number") return formatNumber(a);
        if (typeof a === "object" && a !== null || typeof a === "function") return top(a);
        return String(a);
      case "d":
        if (typeof a === "bigint") return a + "n";
        if (typeof a === "symbol" || (typeof a === "object" && a !== null)) return "NaN";
        return formatNumber(Number(a));
      case "i":
        if (typeof a === "bigint") return a + "n";
        if (typeof a === "symbol") return "NaN";
        return formatNumber(parseInt(a));
      case "f":
        if (typeof a === "symbol") return "NaN";
        return formatNumber(parseFloat(a));
      case "j":
        try { return String(JSON.stringify(a)); } catch { return "[Circular]"; }
      case "o":
      case "O":
        return top(a);
      case "c":
        return "";
    }
    return "";
  }

  function format(...args) {
    const parts = [];
    let i = 0;
    if (typeof args[0] === "string" && args.length > 1 && args[0].includes("%")) {
      const f = args[0];
      i = 1;
      let s = "";
      for (let k = 0; k < f.length; k++) {
        const ch = f[k];
        if (ch === "%" && k + 1 < f.length) {
          const spec = f[k + 1];
          if (spec === "%") { s += "%"; k++; continue; }
          if ("sdifjoOc".includes(spec) && i < args.length) {
            s += formatOne(spec, args[i++]);
            k++;
            continue;
          }
        }
        s += ch;
      }
      parts.push(s);
    }
    for (; i < args.length; i++) {
      const a = args[i];
      parts.push(typeof a === "string" ? a : top(a));
    }
    return parts.join(" ");
  }

  // How the driver prints an uncaught exception or unhandled rejection reason.
  format.uncaught = (e) => (e instanceof Error ? errorText(e, true) : top(e));
  return format;
})
