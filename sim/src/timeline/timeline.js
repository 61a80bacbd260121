// The timeline page of a simulated run (sim/src/timeline.rs embeds this file and the run's
// data as JSON in <script id="timeline-data">). Plain JavaScript, no library, no network.
//
// One SVG, redrawn on every zoom, scroll or filter change, with only what is in view:
// lanes (nodes, then clients) with messages as arrows and faults as spans; then one chart
// per partition (leader and epoch, log end offsets, high watermark, last stable offset);
// then group assignments and transactions. Clicking an item shows its trace record.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("timeline-data").textContent);
  // Messages carry one-letter fields (the page's largest part): a from lane, b to lane,
  // s sent, d delivered (absent: lost), l label, p partition, r trace record.
  let records = null; // parsed at the first click
  function record(index) {
    if (records === null) records = JSON.parse(document.getElementById("timeline-records").textContent);
    return records[index];
  }
  const SVG = "http://www.w3.org/2000/svg";
  const LABEL_WIDTH = 230;
  const LANE_HEIGHT = 26;
  const PARTITION_HEIGHT = 90;
  const ROW_HEIGHT = 18;
  const ARROWS_IN_VIEW_MAX = 4000;
  const LEAD_UP_US = 2000000;
  const NODE_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const nodeCount = data.lanes.filter((lane) => lane.kind === "node").length;
  const failed = data.violations.length > 0;

  // ---- page skeleton ----------------------------------------------------------------
  const header = el("header");
  const h1 = el("h1", {}, data.title);
  header.appendChild(h1);
  const verdict = el("div", { class: failed ? "verdict-failed" : "verdict-passed", id: "verdict" },
    failed ? data.violations.length + " violation(s): the first is marked in red; the events that led to it are highlighted in orange."
      : "The run passed every check.");
  header.appendChild(verdict);
  const details = el("details");
  details.appendChild(el("summary", {}, "Run summary"));
  details.appendChild(el("pre", {}, data.summary));
  header.appendChild(details);
  const notes = el("div", { class: "notes" });
  for (const note of data.notes) notes.appendChild(el("div", { class: "note" }, note));
  header.appendChild(notes);

  const controls = el("div", { class: "controls" });
  const nodeSelect = select("node", ["all"].concat(range(1, nodeCount).map((n) => "node " + n)));
  const partitionSelect = select("partition", ["all"].concat(Object.keys(data.partitions)));
  const groups = unique(data.assignments.map((a) => a.group));
  const groupSelect = select("group", ["all"].concat(groups));
  const txns = unique(data.transactions.map((t) => t.txn)).slice(0, 2000);
  const txnSelect = select("transaction", ["all"].concat(txns));
  const zoomIn = el("button", { id: "zoom-in" }, "zoom in");
  const zoomOut = el("button", { id: "zoom-out" }, "zoom out");
  const fit = el("button", { id: "fit" }, "whole run");
  const toViolation = el("button", { id: "to-violation" }, "go to violation");
  toViolation.disabled = !failed;
  const rangeText = el("span", { class: "range" });
  for (const control of [nodeSelect.label, partitionSelect.label, groupSelect.label, txnSelect.label,
    zoomIn, zoomOut, fit, toViolation, rangeText]) controls.appendChild(control);
  header.appendChild(controls);
  header.appendChild(legend());
  document.body.appendChild(header);
  const main = el("main");
  const chart = el("div", { id: "chart" });
  const detail = el("div", { id: "detail" });
  detail.appendChild(el("h2", {}, "Click an event"));
  detail.appendChild(el("p", {}, "Wheel: zoom around the pointer. Drag or shift+wheel: scroll in time."));
  main.appendChild(chart);
  main.appendChild(detail);
  document.body.appendChild(main);

  // ---- state ----------------------------------------------------------------------------
  const endUs = Math.max(1, data.end_us);
  let view = { start: 0, end: endUs };
  const firstViolation = data.violations[0];
  const violationUs = (v) => (v.t_us === null || v.t_us === undefined ? v.seen_us : v.t_us);
  const leadUp = leadUpSet();
  const items = []; // click targets of the current drawing: [kind, object]

  // ---- helpers ----------------------------------------------------------------------------
  function el(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function range(a, b) { const out = []; for (let i = a; i <= b; i++) out.push(i); return out; }
  function unique(values) { return Array.from(new Set(values)); }
  function select(name, options) {
    const label = el("label", {}, name + " ");
    const element = el("select", { id: "filter-" + name });
    for (const option of options) element.appendChild(el("option", { value: option }, option));
    label.appendChild(element);
    element.addEventListener("change", draw);
    return { label, element };
  }
  function legend() {
    const box = el("div", { class: "legend" });
    const entries = [["#6b7fa8", "node message"], ["#4b9b6b", "client request"], ["#d2452f", "lost (no delivery / no answer)"],
      ["#f0a040", "fault"], ["#333a48", "node down"], ["#d0021b", "violation"], ["#ff7a00", "led to the violation"],
      ["#111", "high watermark (dashed: last stable offset)"]];
    for (const [color, text] of entries) {
      const span = el("span");
      const swatch = el("span", { class: "swatch", style: "background:" + color });
      span.appendChild(swatch);
      span.appendChild(document.createTextNode(text));
      box.appendChild(span);
    }
    return box;
  }
  function escapeText(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function seconds(us) { return (us / 1e6).toFixed(us < 10e6 ? 3 : 2) + " s"; }
  function nodeColor(node) { return NODE_COLORS[(node - 1) % NODE_COLORS.length]; }

  // The items that led to the first violation: in the window before it, on the nodes and
  // partitions its text names (or everything in the window when it names none).
  function leadUpSet() {
    const set = new Set();
    if (!firstViolation) return set;
    const to = violationUs(firstViolation);
    const from = to - LEAD_UP_US;
    const lanes = new Set(firstViolation.nodes.map((n) => n - 1));
    const partitions = new Set(firstViolation.partitions);
    const named = lanes.size > 0 || partitions.size > 0;
    data.messages.forEach((m, i) => {
      if (m.s < from || m.s > to) return;
      if (!named || partitions.has(m.p) || (partitions.size === 0 && (lanes.has(m.a) || lanes.has(m.b)))) {
        set.add("m" + i);
      }
    });
    data.spans.forEach((s, i) => {
      const end = s.end_us === null ? endUs : s.end_us;
      if (end < from || s.start_us > to) return;
      if (!named || s.lanes.some((lane) => lanes.has(lane)) || lanes.size === 0) set.add("s" + i);
    });
    return set;
  }

  // ---- drawing ------------------------------------------------------------------------
  function draw() {
    const started = performance.now();
    const width = Math.max(600, chart.clientWidth || window.innerWidth - 380);
    const plotWidth = width - LABEL_WIDTH - 10;
    const span = Math.max(1, view.end - view.start);
    const x = (us) => LABEL_WIDTH + ((us - view.start) / span) * plotWidth;
    const visible = (a, b) => b >= view.start && a <= view.end;
    const nodeFilter = nodeSelect.element.value === "all" ? null : Number(nodeSelect.element.value.slice(5));
    const partitionFilter = partitionSelect.element.value === "all" ? null : partitionSelect.element.value;
    const groupFilter = groupSelect.element.value === "all" ? null : groupSelect.element.value;
    const txnFilter = txnSelect.element.value === "all" ? null : txnSelect.element.value;
    items.length = 0;
    const parts = [];
    const item = (kind, object) => { items.push([kind, object]); return items.length - 1; };
    let y = 20;

    // Time axis.
    parts.push('<g class="axis">');
    const step = niceStep(span / 10);
    for (let t = Math.ceil(view.start / step) * step; t <= view.end; t += step) {
      parts.push(`<line x1="${x(t)}" x2="${x(t)}" y1="14" y2="100%"></line><text x="${x(t) + 2}" y="11">${seconds(t)}</text>`);
    }
    parts.push("</g>");

    // Lanes.
    const laneY = new Map();
    data.lanes.forEach((lane, index) => {
      if (nodeFilter !== null && lane.kind === "node" && index !== nodeFilter - 1) return;
      laneY.set(index, y + LANE_HEIGHT / 2);
      parts.push(`<rect class="lane-band${laneY.size % 2 ? " alt" : ""}" x="0" y="${y}" width="${width}" height="${LANE_HEIGHT}"></rect>`);
      parts.push(`<text class="lane-label lane-${lane.kind}" data-lane="${escapeText(lane.label)}" x="4" y="${y + LANE_HEIGHT / 2 + 4}">${escapeText(lane.label)}</text>`);
      y += LANE_HEIGHT;
    });
    const lanesBottom = y;

    // Fault and down spans.
    data.spans.forEach((s, i) => {
      const end = s.end_us === null ? endUs : s.end_us;
      if (!visible(s.start_us, end)) return;
      const cls = s.kind === "down" ? "down" : "fault kind-" + s.kind;
      const lead = leadUp.has("s" + i) ? " lead-up" : "";
      for (const lane of s.lanes) {
        if (!laneY.has(lane)) continue;
        const x1 = Math.max(LABEL_WIDTH, x(s.start_us));
        const x2 = Math.min(width, Math.max(x(end), x1 + 3));
        const id = item("span", s);
        parts.push(`<rect class="${cls}${lead} clickable" data-item="${id}" x="${x1}" y="${laneY.get(lane) - LANE_HEIGHT / 2 + 2}" width="${x2 - x1}" height="${LANE_HEIGHT - 4}"><title>${escapeText(s.label)}</title></rect>`);
      }
    });

    // Messages: arrows, or a density when too many are in view.
    const inView = [];
    const lost = (m) => m.d === undefined;
    data.messages.forEach((m, i) => {
      if (!visible(m.s, lost(m) ? m.s : m.d)) return;
      if (!laneY.has(m.a) || !laneY.has(m.b)) return;
      if (partitionFilter !== null && m.p !== partitionFilter) return;
      inView.push(i);
    });
    if (inView.length <= ARROWS_IN_VIEW_MAX) {
      for (const i of inView) {
        const m = data.messages[i];
        const client = data.lanes[m.a].kind === "client";
        const y1 = laneY.get(m.a);
        const y2 = laneY.get(m.b);
        const id = item("message", m);
        const lead = leadUp.has("m" + i) ? " lead-up" : "";
        if (lost(m)) {
          const ym = (y1 + y2) / 2;
          const xm = x(m.s) + 6;
          parts.push(`<line class="msg lost${lead} clickable" data-item="${id}" x1="${x(m.s)}" y1="${y1}" x2="${xm}" y2="${ym}"><title>LOST: ${escapeText(m.l)}</title></line>`);
          parts.push(`<path class="lost-mark" d="M${xm - 3},${ym - 3}L${xm + 3},${ym + 3}M${xm - 3},${ym + 3}L${xm + 3},${ym - 3}"></path>`);
        } else {
          parts.push(`<line class="msg${client ? " client" : ""}${lead} clickable" data-item="${id}" x1="${x(m.s)}" y1="${y1}" x2="${x(m.d)}" y2="${y2}"><title>${escapeText(m.l)}</title></line>`);
        }
      }
    } else {
      // Too many arrows to read: a bar per pixel column and lane, its height the count.
      parts.push(densityBars(inView.map((i) => data.messages[i]), x, laneY, lost, plotWidth));
    }
    // Messages past the page's budget, counted per bucket and link.
    const bucketCounts = new Map();
    for (const row of data.message_buckets) {
      if (!laneY.has(row.from)) continue;
      const t = row.bucket * data.bucket_us;
      if (!visible(t, t + data.bucket_us)) continue;
      const key = row.from + ":" + row.bucket;
      const entry = bucketCounts.get(key) || { lane: row.from, t, sent: 0, delivered: 0 };
      entry.sent += row.sent;
      entry.delivered += row.delivered;
      bucketCounts.set(key, entry);
    }
    for (const entry of bucketCounts.values()) {
      const h = Math.min(LANE_HEIGHT - 4, 2 + Math.log2(1 + entry.sent) * 2);
      const id = item("bucket", entry);
      parts.push(`<rect class="density clickable" data-item="${id}" x="${x(entry.t)}" y="${laneY.get(entry.lane) + LANE_HEIGHT / 2 - 2 - h}" width="${Math.max(1, x(entry.t + data.bucket_us) - x(entry.t) - 1)}" height="${h}"><title>${data.lanes[entry.lane].kind === "client" ? entry.sent + " requests" : entry.sent + " sent, " + entry.delivered + " delivered"} (summarised)</title></rect>`);
    }

    // Moments: fail-stops, exits, skipped faults.
    for (const p of data.points) {
      if (!visible(p.t_us, p.t_us) || p.lane === null || !laneY.has(p.lane)) continue;
      const id = item("point", p);
      parts.push(`<circle class="point kind-${p.kind} clickable" data-item="${id}" cx="${x(p.t_us)}" cy="${laneY.get(p.lane)}" r="4"><title>${escapeText(p.kind)}</title></circle>`);
    }

    // Partitions.
    y += 16;
    parts.push(`<text class="section-title" x="4" y="${y}">Partitions: leader@epoch, log end offset per replica (node colour), high watermark (black), last stable offset (dashed)</text>`);
    y += 8;
    for (const [key, series] of Object.entries(data.partitions)) {
      if (partitionFilter !== null && key !== partitionFilter) continue;
      parts.push(partitionChart(key, series, x, y, width, nodeFilter, item));
      y += PARTITION_HEIGHT + 6;
    }

    // Groups.
    const assignments = data.assignments.filter((a) => groupFilter === null || a.group === groupFilter);
    if (assignments.length > 0) {
      y += 16;
      parts.push(`<text class="section-title" x="4" y="${y}">Group generations and assignments (g: generation, then partitions)</text>`);
      y += 6;
      const rows = unique(assignments.map((a) => a.group + " client " + a.client));
      rows.forEach((row, index) => {
        const rowY = y + index * ROW_HEIGHT;
        parts.push(`<text class="lane-label" x="4" y="${rowY + 13}">${escapeText(row)}</text>`);
      });
      for (const a of assignments) {
        const end = a.end_us === null ? endUs : a.end_us;
        if (!visible(a.start_us, end)) continue;
        const rowY = y + rows.indexOf(a.group + " client " + a.client) * ROW_HEIGHT;
        const x1 = Math.max(LABEL_WIDTH, x(a.start_us));
        const x2 = Math.min(width, x(end));
        const color = NODE_COLORS[a.generation % NODE_COLORS.length];
        const id = item("assignment", a);
        const text = "g" + a.generation + ": " + (a.partitions.length ? a.partitions.join(",") : "none");
        parts.push(`<rect class="assignment clickable" data-item="${id}" x="${x1}" y="${rowY + 1}" width="${Math.max(1, x2 - x1)}" height="${ROW_HEIGHT - 2}" fill="${color}" opacity="0.6"><title>${escapeText(a.member + " " + text)}</title></rect>`);
        if (x2 - x1 > 40) parts.push(`<text x="${x1 + 2}" y="${rowY + 13}">${escapeText(text)}</text>`);
      }
      y += rows.length * ROW_HEIGHT;
    }

    // Transactions.
    const transactions = data.transactions.filter((t) => txnFilter === null || t.txn === txnFilter);
    if (transactions.length > 0) {
      y += 16;
      parts.push(`<text class="section-title" x="4" y="${y}">Transactions, begin to end (green committed, orange aborted, red abandoned or failed, grey open)</text>`);
      y += 6;
      const clients = unique(transactions.map((t) => t.client)).sort((a, b) => a - b);
      clients.forEach((client, index) => {
        parts.push(`<text class="lane-label" x="4" y="${y + index * ROW_HEIGHT + 13}">client ${client}</text>`);
      });
      for (const t of transactions) {
        const end = t.end_us === null ? endUs : t.end_us;
        if (!visible(t.start_us, end)) continue;
        const rowY = y + clients.indexOf(t.client) * ROW_HEIGHT;
        const x1 = Math.max(LABEL_WIDTH, x(t.start_us));
        const x2 = Math.min(width, Math.max(x(end), x1 + 2));
        const id = item("transaction", t);
        parts.push(`<rect class="txn outcome-${t.outcome} clickable" data-item="${id}" x="${x1}" y="${rowY + 1}" width="${x2 - x1}" height="${ROW_HEIGHT - 2}"><title>${escapeText(t.txn + ": " + t.outcome)}</title></rect>`);
        if (x2 - x1 > 50) parts.push(`<text x="${x1 + 2}" y="${rowY + 13}">${escapeText(t.txn)}</text>`);
      }
      y += clients.length * ROW_HEIGHT;
    }
    const height = y + 20;

    // Violations: a line across the whole chart where the checker saw each one.
    data.violations.forEach((v, index) => {
      const t = violationUs(v);
      if (!visible(t, t)) return;
      const id = item("violation", v);
      const vx = Math.min(width - 2, x(t));
      parts.push(`<g class="violation clickable" data-item="${id}" data-violation="${index}"><line x1="${vx}" x2="${vx}" y1="14" y2="${height}"></line><path d="M${vx - 7},2L${vx + 7},2L${vx},14Z"></path><title>${escapeText(v.text)}</title></g>`);
    });

    const svg = `<svg xmlns="${SVG}" id="timeline-svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${parts.join("")}</svg>`;
    chart.innerHTML = svg;
    rangeText.textContent = `${seconds(view.start)} to ${seconds(view.end)} of ${seconds(endUs)}; ${inView.length} messages in view` +
      (inView.length > ARROWS_IN_VIEW_MAX ? " (too many for arrows: shown as bars, zoom in for arrows)" : "") +
      `; drawn in ${Math.round(performance.now() - started)} ms`;
    window.timelineDrawn = (window.timelineDrawn || 0) + 1;
  }

  function densityBars(messages, x, laneY, lost, plotWidth) {
    const columns = new Map();
    for (const m of messages) {
      const column = Math.floor(x(m.s));
      const key = m.a + ":" + column;
      const entry = columns.get(key) || { lane: m.a, column, count: 0, lost: 0 };
      entry.count += 1;
      if (lost(m)) entry.lost += 1;
      columns.set(key, entry);
    }
    const out = [];
    for (const entry of columns.values()) {
      const h = Math.min(LANE_HEIGHT - 4, 2 + Math.log2(1 + entry.count) * 2);
      out.push(`<rect class="density${entry.lost ? " lost" : ""}" x="${entry.column}" y="${laneY.get(entry.lane) + LANE_HEIGHT / 2 - 2 - h}" width="1" height="${h}"></rect>`);
    }
    return out.join("");
  }

  function partitionChart(key, series, x, top, width, nodeFilter, item) {
    const out = [];
    out.push(`<rect class="lane-band alt" x="0" y="${top}" width="${width}" height="${PARTITION_HEIGHT}"></rect>`);
    out.push(`<text class="lane-label partition-label" data-partition="${escapeText(key)}" x="4" y="${top + 14}">${escapeText(key)}</text>`);
    // Leader strip.
    const leaders = series.leader;
    for (let i = 0; i < leaders.length; i++) {
      const [t, node, epoch] = leaders[i];
      const end = i + 1 < leaders.length ? leaders[i + 1][0] : endUs;
      if (end < view.start || t > view.end) continue;
      const x1 = Math.max(LABEL_WIDTH, x(t));
      const x2 = Math.min(width, x(end));
      const id = item("leader", { partition: key, node, epoch, t_us: t });
      out.push(`<rect class="leader clickable" data-item="${id}" x="${x1}" y="${top + 2}" width="${Math.max(1, x2 - x1)}" height="14" fill="${nodeColor(node)}"><title>leader node ${node}, epoch ${epoch}, from ${seconds(t)}</title></rect>`);
      if (x2 - x1 > 34) out.push(`<text x="${x1 + 2}" y="${top + 13}" style="fill:#fff">n${node}@${epoch}</text>`);
    }
    // Offsets: one scale for every series of the partition.
    let max = 1;
    const all = [series.high_watermark, series.last_stable_offset].concat(Object.values(series.log_end_offset));
    for (const values of all) for (const [, value] of values) max = Math.max(max, value);
    const chartTop = top + 20;
    const chartHeight = PARTITION_HEIGHT - 24;
    const yOf = (value) => chartTop + chartHeight - (value / max) * chartHeight;
    out.push(`<text x="4" y="${top + 30}">0..${max}</text>`);
    const step = (values, cls, color) => {
      const points = [];
      let previous = null;
      for (const [t, value] of values) {
        if (t > view.end) { if (previous !== null) points.push(`${x(view.end)},${yOf(previous)}`); previous = null; break; }
        if (t < view.start) { previous = value; continue; }
        if (previous !== null) points.push(`${x(Math.max(t, view.start))},${yOf(previous)}`);
        else if (points.length === 0) points.push(`${LABEL_WIDTH},${yOf(value)}`);
        points.push(`${x(t)},${yOf(value)}`);
        previous = value;
      }
      if (previous !== null) points.push(`${x(Math.min(view.end, endUs))},${yOf(previous)}`);
      if (points.length > 1) out.push(`<polyline class="${cls}" points="${points.join(" ")}"${color ? ` style="stroke:${color}"` : ""}></polyline>`);
    };
    for (const [node, values] of Object.entries(series.log_end_offset)) {
      if (nodeFilter !== null && Number(node) !== nodeFilter) continue;
      step(values, "leo", nodeColor(Number(node)));
    }
    step(series.high_watermark, "hw");
    step(series.last_stable_offset, "lso");
    return out.join("");
  }

  function niceStep(raw) {
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(1, raw))));
    for (const factor of [1, 2, 5, 10]) if (power * factor >= raw) return power * factor;
    return power * 10;
  }

  // ---- detail panel -------------------------------------------------------------------
  function show(kind, object) {
    if (kind === "message") {
      object = { from: data.lanes[object.a].label, to: data.lanes[object.b].label, sent_us: object.s,
        delivered_us: object.d === undefined ? "never (lost)" : object.d, label: object.l,
        partition: object.p, record: object.r };
    }
    detail.textContent = "";
    detail.appendChild(el("h2", {}, kind));
    const fields = Object.assign({}, object);
    delete fields.record;
    detail.appendChild(el("pre", { id: "detail-item" }, JSON.stringify(fields, null, 1)));
    if (object.record !== undefined && object.record !== null) {
      let text = record(object.record);
      try { text = JSON.stringify(JSON.parse(text), null, 1); } catch (error) { /* a cut record: shown as is */ }
      detail.appendChild(el("h2", {}, "Trace record"));
      detail.appendChild(el("pre", { id: "detail-record" }, text));
    } else {
      detail.appendChild(el("p", {}, "No trace record kept for this item (replay with --trace FILE for every record)."));
    }
  }
  chart.addEventListener("click", (event) => {
    const target = event.target.closest("[data-item]");
    if (!target || moved) return;
    const [kind, object] = items[Number(target.getAttribute("data-item"))];
    show(kind, object);
  });

  // ---- zoom and scroll ----------------------------------------------------------------
  function setView(start, end) {
    const span = Math.max(1000, Math.min(endUs, end - start));
    start = Math.max(0, Math.min(endUs - span, start));
    view = { start, end: start + span };
    draw();
  }
  function zoomAt(us, factor) {
    setView(us - (us - view.start) * factor, us + (view.end - us) * factor);
  }
  function pointerUs(event) {
    const box = chart.getBoundingClientRect();
    const plotWidth = Math.max(600, chart.clientWidth) - LABEL_WIDTH - 10;
    const fraction = Math.max(0, Math.min(1, (event.clientX - box.left - LABEL_WIDTH) / plotWidth));
    return view.start + fraction * (view.end - view.start);
  }
  chart.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (event.shiftKey || Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
      const delta = (event.deltaX || event.deltaY) / 500 * (view.end - view.start);
      setView(view.start + delta, view.end + delta);
    } else {
      zoomAt(pointerUs(event), event.deltaY > 0 ? 1.25 : 0.8);
    }
  }, { passive: false });
  let dragFrom = null;
  let moved = false;
  chart.addEventListener("mousedown", (event) => { dragFrom = { x: event.clientX, view }; moved = false; chart.classList.add("dragging"); });
  window.addEventListener("mouseup", () => { dragFrom = null; chart.classList.remove("dragging"); setTimeout(() => { moved = false; }, 0); });
  window.addEventListener("mousemove", (event) => {
    if (!dragFrom) return;
    const dx = event.clientX - dragFrom.x;
    if (Math.abs(dx) > 3) moved = true;
    if (!moved) return;
    const plotWidth = Math.max(600, chart.clientWidth) - LABEL_WIDTH - 10;
    const delta = (-dx / plotWidth) * (dragFrom.view.end - dragFrom.view.start);
    setView(dragFrom.view.start + delta, dragFrom.view.end + delta);
  });
  zoomIn.addEventListener("click", () => zoomAt((view.start + view.end) / 2, 0.5));
  zoomOut.addEventListener("click", () => zoomAt((view.start + view.end) / 2, 2));
  fit.addEventListener("click", () => setView(0, endUs));
  toViolation.addEventListener("click", () => {
    if (!firstViolation) return;
    const t = violationUs(firstViolation);
    setView(t - LEAD_UP_US * 1.2, t + LEAD_UP_US * 0.3);
    show("violation", firstViolation);
  });
  window.addEventListener("resize", draw);

  draw();
  if (firstViolation) show("violation", firstViolation);
  window.timelineReadyMs = performance.now();
})();
