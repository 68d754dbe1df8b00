"use strict";
// The upload page: pick or drop radiographs, follow each job, show the verdict and Grad-CAM.
// Each file is its own job (POST /v1/jobs), so one bad file fails alone and every image gets
// its own progress. Uploads use XMLHttpRequest because fetch cannot report upload progress.

(() => {
  const MAX_PARALLEL_UPLOADS = 3;
  const POLL_WAIT_S = 2; // long-poll slice: short enough to show queued -> running
  const MAX_BUSY_RETRIES = 4;
  const STATE_TEXT = {
    waiting: "Waiting", uploading: "Uploading", queued: "Queued", running: "Analysing",
    succeeded: "Done", failed: "Failed",
  };
  const OOD_MESSAGE = "This image does not resemble the model's training data — no reliable answer";
  const METHOD_NAMES = { gradcam: "Grad-CAM", "gradcam++": "Grad-CAM++", eigengradcam: "Eigen-Grad-CAM" };

  const page = {};
  const pending = [];
  const items = [];
  let activeUploads = 0;

  function init() {
    for (const id of ["drop-zone", "file-input", "results", "result-template", "announcer",
      "method", "empty-state", "results-summary", "clear-results", "service-status",
      "api-key-form", "api-key", "connection"]) {
      page[id] = document.getElementById(id);
    }
    wireIntake();
    wireApiKey();
    page["clear-results"].addEventListener("click", clearFinished);
    refreshService();
  }

  function wireIntake() {
    const zone = page["drop-zone"];
    zone.addEventListener("click", () => page["file-input"].click());
    page["file-input"].addEventListener("change", () => {
      addFiles(page["file-input"].files);
      page["file-input"].value = "";
    });
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("is-dragging"); });
    }
    for (const type of ["dragleave", "drop"]) {
      zone.addEventListener(type, () => zone.classList.remove("is-dragging"));
    }
    zone.addEventListener("drop", (event) => { event.preventDefault(); addFiles(event.dataTransfer.files); });
    // A file dropped beside the zone must not make the browser navigate away from the results.
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (event) => event.preventDefault());
    }
  }

  function wireApiKey() {
    page["api-key"].value = Pneumo.apiKey();
    page["api-key-form"].addEventListener("submit", (event) => {
      event.preventDefault();
      Pneumo.saveApiKey(page["api-key"].value.trim());
      announce(page["api-key"].value ? "API key saved for this tab." : "API key cleared.");
      refreshService();
    });
  }

  async function refreshService() {
    const pill = page["service-status"];
    try {
      const ready = await fetch("/readyz", { cache: "no-store" }).then((response) => response.json());
      const workers = ready.workers || 0;
      pill.dataset.state = ready.status === "ready" ? "ready" : "down";
      pill.textContent = workers ? `Ready · ${workers} worker${workers > 1 ? "s" : ""}` : "No worker available";
    } catch (error) {
      pill.dataset.state = "down";
      pill.textContent = "Gateway unreachable";
    }
    await refreshModels();
  }

  async function refreshModels() {
    try {
      const { models } = await Pneumo.getJson("/v1/models");
      if (models.some((model) => model.synthetic)) Pneumo.showSyntheticBanner();
    } catch (error) {
      if (error.status === 401) {
        page.connection.open = true;
        announce("This gateway needs an API key.");
      }
    }
  }

  function addFiles(fileList) {
    // Newest selection on top, each selection in the order it was picked.
    const selection = document.createDocumentFragment();
    for (const file of fileList) {
      const item = createItem(file, selection);
      items.push(item);
      pending.push(item);
    }
    page.results.prepend(selection);
    page["empty-state"].hidden = items.length > 0;
    updateSummary();
    pump();
  }

  function pump() {
    while (activeUploads < MAX_PARALLEL_UPLOADS && pending.length) {
      const item = pending.shift();
      activeUploads += 1;
      submit(item).finally(() => { activeUploads -= 1; pump(); });
    }
  }

  function createItem(file, selection) {
    const node = page["result-template"].content.firstElementChild.cloneNode(true);
    const item = { file, node, job: null, urls: [], state: "waiting" };
    node.querySelector(".file-name").textContent = file.name;
    node.querySelector("article").setAttribute("aria-label", `Result for ${file.name}`);
    selection.append(node);
    setState(item, "waiting");
    return item;
  }

  function setState(item, state, detail) {
    item.state = state;
    item.node.dataset.state = state;
    item.node.querySelector(".state-badge").textContent = STATE_TEXT[state];
    const progress = item.node.querySelector(".progress");
    const final = state === "succeeded" || state === "failed";
    item.node.querySelector(".progress-row").hidden = final;
    if (state !== "uploading") progress.removeAttribute("value"); // indeterminate while waiting
    progress.setAttribute("aria-label", `${item.file.name}: ${STATE_TEXT[state]}`);
    item.node.querySelector(".progress-text").textContent = detail || `${STATE_TEXT[state]}…`;
    updateSummary();
  }

  function setUploadProgress(item, fraction) {
    const percent = Math.round(fraction * 100);
    item.node.querySelector(".progress").value = percent;
    item.node.querySelector(".progress-text").textContent = `Uploading ${percent}%`;
  }

  async function submit(item) {
    try {
      const job = await uploadWithRetry(item);
      item.job = job;
      announce(`${item.file.name} uploaded; waiting for the model.`);
      const finished = await follow(item, job);
      if (finished.status === "succeeded") await showResult(item, finished);
      else showFailure(item, finished.error ? finished.error.message : "The job failed.");
    } catch (error) {
      showFailure(item, error.message);
    }
  }

  async function uploadWithRetry(item) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        setState(item, "uploading", "Uploading 0%");
        return await upload(item);
      } catch (error) {
        const busy = error.status === 429 || error.status === 503;
        if (!busy || attempt >= MAX_BUSY_RETRIES) throw error;
        const seconds = Math.min(30, error.retryAfter || 2 ** attempt);
        setState(item, "waiting", `Service busy; retrying in ${seconds} s`);
        await sleep(seconds * 1000);
      }
    }
  }

  function upload(item) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", "/v1/jobs");
      for (const [name, value] of Object.entries(Pneumo.authHeaders())) request.setRequestHeader(name, value);
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) setUploadProgress(item, event.loaded / event.total);
      });
      request.addEventListener("load", () => {
        const body = Pneumo.parseJson(request.responseText);
        if (request.status === 202) resolve(body);
        else reject(new Pneumo.ApiError(request.status, body, Number(request.getResponseHeader("Retry-After"))));
      });
      request.addEventListener("error", () => reject(new Error("The gateway could not be reached.")));
      const form = new FormData();
      form.append("file", item.file);
      form.append("method", page.method.value);
      request.send(form);
    });
  }

  async function follow(item, job) {
    while (job.status !== "succeeded" && job.status !== "failed") {
      setState(item, job.status);
      job = await Pneumo.getJson(`/v1/jobs/${job.job_id}?wait=${POLL_WAIT_S}`);
    }
    return job;
  }

  async function showResult(item, job) {
    const { result, explanation } = job;
    fillVerdict(item.node, result, explanation);
    if (result.model.synthetic) Pneumo.showSyntheticBanner();
    setState(item, "succeeded");
    item.node.querySelector(".result-body").hidden = false;
    announce(result.assessment === "out_of_distribution"
      ? `${item.file.name}: ${OOD_MESSAGE}.`
      : `${item.file.name}: ${result.label}, probability of pneumonia ${Pneumo.formatNumber(result.probability, 2)}.`);
    await loadPictures(item, job);
  }

  function fillVerdict(node, result, explanation) {
    const pneumonia = result.label === "PNEUMONIA";
    const foreign = result.assessment === "out_of_distribution";
    const verdict = node.querySelector(".verdict");
    verdict.dataset.label = result.label;
    verdict.dataset.assessment = result.assessment || "not_assessed";
    // A flagged image leads with the warning; its label stays visible, for the record only.
    const warning = node.querySelector(".ood-warning");
    warning.hidden = !foreign;
    warning.textContent = foreign ? OOD_MESSAGE : "";
    node.querySelector(".label-text").textContent = foreign ? `For the record only: ${result.label}` : result.label;
    node.querySelector(".verdict-rule").textContent = foreign
      ? "The model was not made for images like this one; its label and probability must not be relied on."
      : pneumonia
        ? "At or above the decision threshold: prioritise for review."
        : "Below the decision threshold.";
    setFact(node, "ood", result.ood
      ? `${Pneumo.formatNumber(result.ood.score, 2)} (flagged above ${Pneumo.formatNumber(result.ood.threshold, 2)})`
      : "not assessed (the model has no gate)");
    setFact(node, "probability", Pneumo.formatNumber(result.probability));
    setFact(node, "threshold", Pneumo.formatNumber(result.threshold));
    setFact(node, "confidence", `${(result.confidence * 100).toFixed(1)}%`);
    const model = node.querySelector(".fact-model");
    model.replaceChildren(Pneumo.text("a", `${result.model.name} ${result.model.version}`));
    model.firstChild.href = "/model-card";
    if (result.model.synthetic) model.append(" ", Pneumo.text("span", "synthetic", "tag tag-warning"));
    setFact(node, "method", `${METHOD_NAMES[explanation.method] || explanation.method}, target ${explanation.target}`);
    node.querySelector(".gauge-fill").style.width = `${result.probability * 100}%`;
    node.querySelector(".gauge-threshold").style.left = `${result.threshold * 100}%`;
    node.querySelector(".overlay-caption").textContent = `${METHOD_NAMES[explanation.method] || explanation.method} overlay`;
  }

  function setFact(node, name, value) {
    node.querySelector(`.fact-${name}`).textContent = value;
  }

  async function loadPictures(item, job) {
    const node = item.node;
    const base = `/v1/jobs/${job.job_id}`;
    // The film copy at its own aspect ratio: the heatmap is drawn on it pixel for pixel.
    const [film, heatmap, overlay] = await Promise.allSettled(
      [`${base}/film`, `${base}/heatmap.png`, `${base}/overlay.png`].map((path) => Pneumo.objectUrl(path)));
    showOriginal(item, film.status === "fulfilled" ? film.value : null);
    const inputImage = node.querySelector(".image-input");
    const heatmapImage = node.querySelector(".image-heatmap");
    // Without the film, the server's blended overlay is the best underlay there is.
    setImage(item, inputImage, film.status === "fulfilled" ? film.value : overlay.value,
      `${item.file.name} under its heatmap`);
    if (heatmap.status === "fulfilled") setImage(item, heatmapImage, heatmap.value, "Grad-CAM heatmap");
    if (overlay.status === "fulfilled") {
      const link = node.querySelector(".overlay-link");
      link.href = overlay.value;
      link.download = `${job.job_id}-overlay.png`;
    }
    wireSlider(node, heatmapImage);
  }

  function showOriginal(item, fallbackUrl) {
    const image = item.node.querySelector(".image-original");
    image.alt = `Original radiograph ${item.file.name}`;
    const localUrl = URL.createObjectURL(item.file);
    item.urls.push(localUrl);
    // A browser cannot draw DICOM: show the server's rendering of its pixels instead.
    image.addEventListener("error", () => { if (fallbackUrl) image.src = fallbackUrl; }, { once: true });
    image.src = localUrl;
  }

  function setImage(item, image, url, alt) {
    if (!url) return;
    item.urls.push(url);
    image.alt = alt;
    image.src = url;
  }

  function wireSlider(node, heatmapImage) {
    const slider = node.querySelector(".opacity");
    const output = node.querySelector(".opacity-value");
    const apply = () => {
      heatmapImage.style.opacity = String(slider.value / 100);
      output.textContent = `${slider.value}%`;
      slider.setAttribute("aria-valuetext", `${slider.value} percent`);
    };
    slider.addEventListener("input", apply);
    apply();
  }

  function showFailure(item, message) {
    setState(item, "failed");
    const error = item.node.querySelector(".error-text");
    error.textContent = message;
    error.hidden = false;
    announce(`${item.file.name} failed: ${message}`);
  }

  function clearFinished() {
    for (const item of items.filter((each) => each.state === "succeeded" || each.state === "failed")) {
      item.urls.forEach((url) => URL.revokeObjectURL(url));
      item.node.remove();
      items.splice(items.indexOf(item), 1);
    }
    page["empty-state"].hidden = items.length > 0;
    updateSummary();
    page["drop-zone"].focus();
  }

  function updateSummary() {
    const done = items.filter((item) => item.state === "succeeded").length;
    const failed = items.filter((item) => item.state === "failed").length;
    const working = items.length - done - failed;
    const parts = [`${items.length} image${items.length === 1 ? "" : "s"}`, `${done} done`];
    if (working) parts.push(`${working} in progress`);
    if (failed) parts.push(`${failed} failed`);
    page["results-summary"].textContent = items.length ? parts.join(" · ") : "";
    page["clear-results"].hidden = done + failed === 0;
  }

  function announce(message) {
    page.announcer.textContent = message;
  }

  function sleep(milliseconds) {
    return new Promise((resolve) => setTimeout(resolve, milliseconds));
  }

  document.addEventListener("DOMContentLoaded", init);
})();
