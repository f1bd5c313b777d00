// Entity highlighting shared by the `ner serve` page and `ner tag --format html`.
// NerHighlight.line(text, entities, number) builds the same <p class="line"> as ner/web/__init__.py's line_html
// (offsets count code points, as Python's do); NerHighlight.decorate(root, legend) colours every mark by its type
// and writes the legend (each type, its colour and how often it occurs).
"use strict";
const NerHighlight = (() => {
  const KNOWN = { PER: "#ffb4a8", ORG: "#9fd3ff", LOC: "#a9eba0", MISC: "#ffe08a" };
  const PALETTE = ["#dcc4ff", "#ffd0a0", "#b7eeee", "#f7bde0", "#d9ec9c", "#c9cdff", "#f2d2b8", "#c4e8d4"];
  const assigned = new Map();

  function colour(type) {
    if (type in KNOWN) return KNOWN[type];
    if (!assigned.has(type)) assigned.set(type, PALETTE[assigned.size % PALETTE.length]);
    return assigned.get(type);
  }

  function mark(type, score, text) {
    const element = document.createElement("mark");
    element.className = "ent";
    element.dataset.type = type;
    element.dataset.score = Number(score).toFixed(4);
    element.title = `${type} ${Number(score).toFixed(4)}`;
    element.textContent = text;
    return element;
  }

  function line(text, entities, number) {
    const paragraph = document.createElement("p");
    paragraph.className = "line";
    paragraph.dataset.line = String(number);
    const chars = Array.from(text);  // code points: the service's offsets are Python string offsets
    let at = 0;
    for (const entity of entities) {
      if (entity.start > at) paragraph.append(chars.slice(at, entity.start).join(""));
      paragraph.append(mark(entity.type, entity.score, chars.slice(entity.start, entity.end).join("")));
      at = entity.end;
    }
    if (at < chars.length) paragraph.append(chars.slice(at).join(""));
    return paragraph;
  }

  function decorate(root, legend) {
    const counts = new Map();
    for (const element of root.querySelectorAll("mark.ent")) {
      const type = element.dataset.type;
      element.style.setProperty("--ent-colour", colour(type));
      counts.set(type, (counts.get(type) || 0) + 1);
    }
    if (!legend) return;
    legend.replaceChildren();
    for (const type of [...counts.keys()].sort()) {
      const item = document.createElement("span");
      item.className = "legend-item";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.textContent = type;
      swatch.style.setProperty("--ent-colour", colour(type));
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(counts.get(type));
      item.append(swatch, count);
      legend.append(item);
    }
  }

  return { colour, line, decorate };
})();
