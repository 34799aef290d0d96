// The kdiqa web page: each picked or dropped photo is sent to POST /v1/map?format=both (raw bytes), which
// returns its score, its quality-map grid and the overlay picture; cards can be sorted by score.
"use strict";

const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const sortButton = document.getElementById("sort");
const showMap = document.getElementById("show-map");
let pending = 0;
let bestFirst = true;

fetch("/v1/models").then((r) => r.json()).then((d) => {
  const m = d.models[0];
  document.getElementById("model").textContent = m.bundled ? `${m.bundled} (${m.name})` : m.name;
});

function card(file) {
  const el = document.createElement("article");
  el.className = "card";
  el.innerHTML = '<img class="photo" alt=""><img class="overlay" alt="" hidden>' +
    '<div class="score">…</div><div class="range"></div><div class="name"></div>';
  el.querySelector(".name").textContent = file.name;
  el.querySelector(".photo").src = URL.createObjectURL(file);
  el.querySelector(".photo").alt = file.name;
  results.appendChild(el);
  return el;
}

function showOverlay(el) {
  const hasMap = el.dataset.score !== undefined;
  el.querySelector(".overlay").hidden = !(showMap.checked && hasMap);
  el.querySelector(".photo").hidden = showMap.checked && hasMap;
}

async function scoreFile(file) {
  const el = card(file);
  try {
    const r = await fetch("/v1/map?format=both", {
      method: "POST",
      body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    });
    const d = await r.json();
    if (!r.ok) throw new Error(d.error || r.statusText);
    el.dataset.score = d.score;
    el.querySelector(".score").textContent = d.score.toFixed(1);
    const m = d.map;
    el.querySelector(".range").textContent =
      `map ${m.rows}×${m.cols} patches of ${m.patch}px: ${m.min.toFixed(1)}–${m.max.toFixed(1)}`;
    const overlay = el.querySelector(".overlay");
    overlay.src = d.overlay_png;
    overlay.alt = `quality map of ${file.name}`;
    showOverlay(el);
  } catch (err) {
    el.classList.add("failed");
    el.querySelector(".score").innerHTML = '<span class="error"></span>';
    el.querySelector(".error").textContent = String(err.message || err);
  }
}

async function handle(files) {
  const list = Array.from(files);
  pending += list.length;
  statusLine.textContent = `scoring ${pending} photo(s)…`;
  const queue = list.slice();
  const worker = async () => {
    while (queue.length) {
      await scoreFile(queue.shift());
      pending -= 1;
      statusLine.textContent = pending ? `scoring ${pending} photo(s)…` : `${results.children.length} scored`;
    }
  };
  await Promise.all([worker(), worker()]); // two requests at a time
  sortButton.disabled = results.children.length < 2;
}

function sortCards() {
  const cards = Array.from(results.children);
  const key = (c) => (c.dataset.score === undefined ? -Infinity : Number(c.dataset.score));
  cards.sort((a, b) => (bestFirst ? key(b) - key(a) : key(a) - key(b)));
  cards.forEach((c) => results.appendChild(c));
  sortButton.textContent = bestFirst ? "Sorted: best first (click: worst first)" : "Sorted: worst first (click: best first)";
  bestFirst = !bestFirst;
}

document.getElementById("files").addEventListener("change", (e) => handle(e.target.files));
sortButton.addEventListener("click", sortCards);
showMap.addEventListener("change", () => Array.from(results.children).forEach(showOverlay));
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); handle(e.dataTransfer.files); });
