"use strict";
// The model-card page: renders GET /v1/models (the cards of the models live workers serve)
// as a readable document. Everything from the server is set as text.

(() => {
  const METRIC_NAMES = {
    accuracy: "Accuracy", precision: "Precision (PPV)", recall: "Sensitivity (recall)",
    specificity: "Specificity", f1: "F1 score", roc_auc: "ROC AUC", pr_auc: "PR AUC",
    ece: "Expected calibration error",
  };
  const MAX_FACT_DEPTH = 2;

  async function init() {
    const status = document.getElementById("card-status");
    try {
      const { models } = await Pneumo.getJson("/v1/models");
      status.textContent = models.length ? "" : "No worker is serving a model right now.";
      status.hidden = models.length > 0;
      if (models.some((model) => model.synthetic)) Pneumo.showSyntheticBanner();
      document.getElementById("cards").replaceChildren(...models.map(renderCard));
    } catch (error) {
      status.textContent = error.status === 401
        ? "This gateway needs an API key: enter it on the submit page first."
        : `The model cards could not be loaded: ${error.message}`;
    }
  }

  function renderCard(card) {
    const section = document.createElement("section");
    section.className = "panel model-card";
    section.id = `model-${card.sha256}`;
    const title = Pneumo.text("h2", `${card.name} ${card.version}`);
    if (card.synthetic) title.append(" ", Pneumo.text("span", "synthetic demo", "tag tag-warning"));
    const created = card.created_at ? ` · created ${card.created_at}` : "";
    section.append(title, Pneumo.text("p", `sha256 ${card.sha256}${created}`, "subtitle"));
    section.append(heading("Intended use"), Pneumo.text("p", card.intended_use || "Not stated."));
    section.append(heading("Limitations"), list(card.limitations, "None recorded."));
    section.append(heading("Decision threshold"), thresholdFacts(card));
    section.append(heading("Performance"), ...performance(card.metrics || {}));
    for (const [label, key] of [["Training data", "data"], ["Training", "training"],
      ["Preprocessing", "preprocessing"], ["Architecture", "architecture"],
      ["Library versions", "library_versions"]]) {
      section.append(heading(label), facts(card[key]));
    }
    const served = card.workers ? `${card.workers} worker${card.workers > 1 ? "s" : ""}` : "No worker.";
    section.append(heading("Served by"), Pneumo.text("p", served));
    return section;
  }

  function heading(label) {
    return Pneumo.text("h3", label);
  }

  function list(values, emptyText) {
    if (!values || !values.length) return Pneumo.text("p", emptyText, "hint");
    const node = document.createElement("ul");
    node.append(...values.map((value) => Pneumo.text("li", String(value))));
    return node;
  }

  function thresholdFacts(card) {
    const threshold = card.threshold || {};
    return facts({
      "P(pneumonia) at or above": threshold.value,
      "Chosen by": threshold.rule,
      "Target sensitivity": threshold.target_sensitivity,
      "Validation sensitivity": threshold.validation_sensitivity,
      "Validation specificity": threshold.validation_specificity,
      "Calibration temperature": card.temperature,
    });
  }

  function performance(metrics) {
    const splits = Object.entries(metrics).filter(([, values]) => hasMetrics(values));
    if (!splits.length) return [Pneumo.text("p", "No evaluation recorded in this card.", "hint")];
    return splits.map(([split, values]) => metricsTable(split, values));
  }

  function hasMetrics(values) {
    return values && typeof values === "object" && Object.keys(METRIC_NAMES).some((name) => name in values);
  }

  function metricsTable(split, values) {
    const table = document.createElement("table");
    table.className = "metrics-table";
    const images = typeof values.images === "number" ? ` (${values.images} images)` : "";
    table.createCaption().textContent = `${split}${images}`;
    const head = table.createTHead().insertRow();
    for (const label of ["Metric", "Value", "95% CI"]) {
      const cell = Pneumo.text("th", label);
      cell.scope = "col";
      head.append(cell);
    }
    const body = table.createTBody();
    for (const [name, label] of Object.entries(METRIC_NAMES)) {
      if (name in values) addMetricRow(body, label, values[name]);
    }
    const wrapper = document.createElement("div");
    wrapper.className = "table-scroll";
    wrapper.append(table);
    return wrapper;
  }

  function addMetricRow(body, label, metric) {
    const value = metric && typeof metric === "object" ? metric.value : metric;
    const interval = metric && Array.isArray(metric.ci95) ? metric.ci95 : null;
    const row = body.insertRow();
    const name = Pneumo.text("th", label);
    name.scope = "row";
    row.append(name, Pneumo.text("td", Pneumo.formatNumber(value)),
      Pneumo.text("td", interval ? interval.map((bound) => Pneumo.formatNumber(bound)).join(" – ") : "–"));
  }

  function facts(values) {
    const entries = flatten(values || {}, "", 0).filter(([, value]) => value !== null && value !== undefined);
    if (!entries.length) return Pneumo.text("p", "Not recorded.", "hint");
    const list = document.createElement("dl");
    list.className = "facts";
    for (const [key, value] of entries) {
      const row = document.createElement("div");
      row.append(Pneumo.text("dt", key), Pneumo.text("dd", display(value)));
      list.append(row);
    }
    return list;
  }

  function flatten(values, prefix, depth) {
    return Object.entries(values).flatMap(([key, value]) => {
      const label = prefix ? `${prefix} › ${humanise(key)}` : humanise(key);
      const nested = value && typeof value === "object" && !Array.isArray(value);
      return nested && depth < MAX_FACT_DEPTH ? flatten(value, label, depth + 1) : [[label, value]];
    });
  }

  function humanise(key) {
    const words = key.replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function display(value) {
    if (typeof value === "number") return String(Number(value.toFixed(4))); // 412.3, not 412.3000
    if (Array.isArray(value)) return value.map(display).join(", ");
    if (value && typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
