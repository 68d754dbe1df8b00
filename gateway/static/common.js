"use strict";
// Shared by the upload page and the model-card page: the optional API key, authenticated
// requests, and the synthetic-model banner. Server data is only ever set as text, never HTML.

const Pneumo = (() => {
  const KEY_STORAGE = "pneumo.apiKey";

  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      const detail = body && body.error;
      super(detail ? detail.message : `The gateway answered HTTP ${status}.`);
      this.status = status;
      this.code = detail ? detail.code : "http_error";
      this.retryAfter = retryAfter;
    }
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  function saveApiKey(value) {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  }

  function authHeaders() {
    const key = apiKey();
    return key ? { "X-API-Key": key } : {};
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (error) {
      return null;
    }
  }

  async function request(path) {
    let response;
    try {
      response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, { error: { code: "unreachable", message: "The gateway could not be reached." } });
    }
    if (!response.ok) {
      const body = parseJson(await response.text());
      throw new ApiError(response.status, body, Number(response.headers.get("Retry-After")));
    }
    return response;
  }

  async function getJson(path) {
    return (await request(path)).json();
  }

  // Pictures go through fetch (not <img src>) so the API key header travels with them.
  async function objectUrl(path) {
    return URL.createObjectURL(await (await request(path)).blob());
  }

  function showSyntheticBanner() {
    const banner = document.getElementById("synthetic-banner");
    if (banner) banner.hidden = false;
  }

  function text(tag, content, className) {
    const node = document.createElement(tag);
    node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  function formatNumber(value, digits = 3) {
    return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
  }

  return { ApiError, apiKey, saveApiKey, authHeaders, parseJson, getJson, objectUrl,
           showSyntheticBanner, text, formatNumber };
})();
