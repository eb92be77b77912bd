// shoprank relevance workbench: every figure on the page comes from the API's own routes.
// POST /search per column, POST /judgments for labels and NDCG@10 (computed server-side,
// with the evaluation code), GET /rerankers for the versions to compare. No build step.
"use strict";

const COLUMNS = [
  { name: "lexical", title: "Lexical (BM25)", request: { mode: "lexical", rerank: false } },
  { name: "dense", title: "Dense", request: { mode: "dense", rerank: false } },
  { name: "hybrid", title: "Hybrid", request: { mode: "hybrid", rerank: false } },
  { name: "reranked", title: "Hybrid + rerank", request: { mode: "hybrid", rerank: true } },
];
const FIELDS = ["q", "brand", "category", "price_min", "price_max", "k", "a", "b"];
const $ = (id) => document.getElementById(id);
let serving = null;
let runs = 0;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function headers() {
  const found = { "content-type": "application/json" };
  const key = $("key").value.trim();
  if (key) found.authorization = "Bearer " + key;
  return found;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(`${path}: ${response.status} ${data.error_type || ""} ${data.error || ""}`.trim());
  }
  return data;
}

// The request every column shares: the query, k and the filters typed in the form.
function baseRequest() {
  const request = { query: $("q").value.trim(), k: Number($("k").value) || 10 };
  const filters = {};
  const brands = $("brand").value.split(",").map((b) => b.trim()).filter(Boolean);
  if (brands.length) filters.brands = brands;
  const category = $("category").value.trim();
  if (category) filters.categories = [category];
  if ($("price_min").value !== "") filters.price_min = Number($("price_min").value);
  if ($("price_max").value !== "") filters.price_max = Number($("price_max").value);
  if (Object.keys(filters).length) request.filters = filters;
  return request;
}

function money(price) {
  return price === null || price === undefined ? "no price" : "$" + Number(price).toFixed(2);
}

function badge(labels, id) {
  const label = labels[id];
  const known = ["E", "S", "C", "I"].includes(label);
  const text = label === undefined ? "–" : label;
  const node = element("span", "badge " + (known ? "label-" + label : "label-unjudged"), text);
  node.title = label === undefined ? "not judged" : "judged " + label;
  return node;
}

function renderColumn(title, name, answer, judgments, moves) {
  const column = element("article", "column");
  column.dataset.column = name;
  const heading = element("h2", null, title);
  const ndcg = element("span", "ndcg");
  if (judgments.judged && judgments.ndcg[name] !== undefined) {
    ndcg.textContent = "NDCG@10 " + judgments.ndcg[name].toFixed(3);
  } else {
    ndcg.textContent = judgments.judged ? "" : "not judged";
  }
  heading.append(ndcg);
  column.append(heading);
  if (answer.error) {
    column.append(element("p", "error", answer.error));
    return column;
  }
  if (answer.model_version) column.append(element("p", "meta", "scored by " + answer.model_version));
  const list = element("ol");
  answer.results.forEach((hit, rank) => {
    const item = element("li");
    item.dataset.id = hit.id;
    item.append(badge(judgments.labels || {}, hit.id));
    const move = moves ? moves(hit.id, rank) : null;
    if (move) {
      item.classList.add(move.kind);
      item.append(element("span", "move " + move.direction, move.text + " "));
    }
    item.append(element("span", "title", hit.title));
    const meta = element("span", "meta");
    meta.append(element("span", "brand", hit.brand || "no brand"));
    meta.append(element("span", "price", money(hit.price)));
    meta.append(element("span", "score", "score " + hit.score.toFixed(4)));
    item.append(meta);
    list.append(item);
  });
  if (!answer.results.length) column.append(element("p", "meta", "no results"));
  column.append(list);
  return column;
}

function renderTimings(answer) {
  const section = $("timings");
  const bars = $("timing-bars");
  bars.replaceChildren();
  if (!answer || answer.error) {
    section.hidden = true;
    return;
  }
  const timings = answer.timings_ms;
  const total = timings.total || Math.max(...Object.values(timings), 1);
  for (const [stage, ms] of Object.entries(timings)) {
    const row = element("li");
    row.dataset.stage = stage;
    row.append(element("span", null, stage));
    const bar = element("span", "bar");
    bar.style.width = Math.min(100, (100 * ms) / total).toFixed(1) + "%";
    row.append(bar, element("span", null, ms.toFixed(1) + " ms"));
    bars.append(row);
  }
  $("served-by").textContent = answer.model_version ? "(" + answer.model_version + ")" : "";
  section.hidden = false;
}

// Moves of B's products against A's ranking: up/down by n, or new to A's list.
function movesAgainst(reference) {
  const rankIn = new Map(reference.map((hit, rank) => [hit.id, rank]));
  return (id, rank) => {
    if (!rankIn.has(id)) return { kind: "new", direction: "up", text: "new" };
    const shift = rankIn.get(id) - rank;
    if (shift === 0) return null;
    return {
      kind: "moved",
      direction: shift > 0 ? "up" : "down",
      text: (shift > 0 ? "▲" : "▼") + Math.abs(shift),
    };
  };
}

async function settle(promise) {
  try {
    return await promise;
  } catch (error) {
    return { error: error.message, results: [] };
  }
}

async function run() {
  const ticket = ++runs;
  const base = baseRequest();
  if (!base.query) return;
  const status = $("status");
  status.className = "";
  status.textContent = "searching…";
  const started = performance.now();
  const answers = await Promise.all(
    COLUMNS.map((column) => settle(call("POST", "/search", { ...base, ...column.request })))
  );
  const versionA = $("a").value;
  const versionB = $("b").value;
  const reranked = answers[3];
  const pick = (version) =>
    !version || version === serving
      ? Promise.resolve(reranked)
      : settle(call("POST", "/search", { ...base, mode: "hybrid", rerank: true, model_version: version }));
  const [answerA, answerB] = versionA && versionB ? await Promise.all([pick(versionA), pick(versionB)]) : [null, null];
  const rankings = {};
  COLUMNS.forEach((column, i) => (rankings[column.name] = answers[i].results.map((hit) => hit.id)));
  if (answerA && answerB) {
    rankings.a = answerA.results.map((hit) => hit.id);
    rankings.b = answerB.results.map((hit) => hit.id);
  }
  const judgments = await settle(call("POST", "/judgments", { query: base.query, rankings }));
  if (ticket !== runs) return; // a newer search has started
  const columns = $("columns");
  columns.replaceChildren(
    ...COLUMNS.map((column, i) => renderColumn(column.title, column.name, answers[i], judgments, null))
  );
  renderTimings(reranked);
  const compare = $("compare");
  if (answerA && answerB) {
    $("compare-columns").replaceChildren(
      renderColumn("A: reranker/" + versionA, "a", answerA, judgments, null),
      renderColumn("B: reranker/" + versionB, "b", answerB, judgments, movesAgainst(answerA.results))
    );
    compare.hidden = false;
  } else {
    compare.hidden = true;
  }
  const failed = [...answers, judgments].filter((answer) => answer.error);
  const took = (performance.now() - started).toFixed(0);
  status.className = failed.length ? "error" : "";
  status.textContent = failed.length
    ? failed.map((answer) => answer.error).join("; ")
    : `${reranked.results.length} results per column in ${took} ms` +
      (reranked.corrected_query ? ` · showing results for “${reranked.corrected_query}”` : "") +
      (judgments.judged ? ` · judged query ${judgments.query_id} (${judgments.source})` : " · query not judged");
  document.body.dataset.state = "done";
}

async function loadVersions(wanted) {
  let listing;
  try {
    listing = await call("GET", "/rerankers");
  } catch (error) {
    listing = { versions: [], production: null, serving: null };
  }
  serving = listing.serving ? listing.serving.replace(/^reranker\//, "") : null;
  const names = listing.versions.map((version) => version.version);
  const candidate = [...listing.versions].reverse().find((version) => version.version !== listing.production);
  const defaults = { a: listing.production || "", b: candidate ? candidate.version : "" };
  for (const field of ["a", "b"]) {
    const select = $(field);
    select.replaceChildren(element("option", null, "—"));
    select.firstChild.value = "";
    for (const version of listing.versions) {
      const option = element("option", null, version.version + " (" + version.state + ")");
      option.value = version.version;
      select.append(option);
    }
    const chosen = wanted[field];
    select.value = chosen && names.includes(chosen) ? chosen : defaults[field];
  }
}

function readAddress() {
  const params = new URLSearchParams(location.search);
  const wanted = {};
  for (const field of FIELDS) {
    const value = params.get(field);
    if (value === null) continue;
    wanted[field] = value;
    if (field !== "a" && field !== "b") $(field).value = value;
  }
  return wanted;
}

function writeAddress() {
  const params = new URLSearchParams();
  for (const field of FIELDS) {
    const value = $(field).value.trim();
    if (value && !(field === "k" && value === "10")) params.set(field, value);
  }
  history.replaceState(null, "", "/ui?" + params.toString());
}

async function start() {
  $("key").value = sessionStorage.getItem("shoprank-key") || "";
  $("key").addEventListener("change", () => sessionStorage.setItem("shoprank-key", $("key").value));
  const wanted = readAddress();
  await loadVersions(wanted);
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    document.body.dataset.state = "searching";
    writeAddress();
    run();
  });
  if ($("q").value.trim()) run();
}

start();
