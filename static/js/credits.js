// The credits page: live fee preview, saving a card (SetupIntent + Stripe.js confirmCardSetup),
// paying with the saved card, 3-D Secure when the bank asks for it, and waiting for the webhook.
// Every amount shown comes from the server (billing/fees.py); nothing is computed here.
(function () {
  "use strict";
  const config = document.getElementById("billing-config").dataset;
  const cfg = {
    publishableKey: config.publishableKey,
    setupUrl: config.setupUrl,
    confirmUrl: config.confirmUrl,
    purchaseUrl: config.purchaseUrl,
    statusUrl: config.statusUrl,
    hasCard: config.hasCard === "true",
  };
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const stripe = typeof Stripe === "function" ? Stripe(cfg.publishableKey) : null;

  // --- forms that ask first (refunds) and checkboxes that save themselves (no inline handlers) --------
  document.querySelectorAll("form[data-confirm]").forEach((f) =>
    f.addEventListener("submit", (event) => {
      if (!window.confirm(f.dataset.confirm)) event.preventDefault();
    })
  );
  document.querySelectorAll("input[data-autosubmit]").forEach((input) =>
    input.addEventListener("change", () => input.form.submit())
  );

  async function post(url, data) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrf },
      body: new URLSearchParams(data || {}),
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((body.error && body.error.message) || "Something went wrong (" + response.status + ")");
    }
    return body;
  }

  function status(text, isError) {
    const el = $("pay-status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  // --- live fee preview -------------------------------------------------------------------------
  const form = $("buy-form");
  const method = () => form.querySelector("[name=method]:checked").value;
  let quoteTimer = null;
  // Shows the server's quote for the amount typed; returns the error message of a bad amount (or null).
  async function refreshQuote() {
    const params = new URLSearchParams({ amount: $("amount").value, method: method() });
    const response = await fetch(form.dataset.quoteUrl + "?" + params, { credentials: "same-origin" });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      $("q-credits").textContent = "$" + body.credits;
      $("q-fee").textContent = "$" + body.fee;
      $("q-total").textContent = "$" + body.total;
      $("quote").hidden = false;
      $("quote-error").hidden = true;
      return null;
    }
    const message = (body.error && body.error.message) || "Invalid amount";
    $("quote").hidden = true;
    $("quote-error").textContent = message;
    $("quote-error").hidden = false;
    return message;
  }
  $("amount").addEventListener("input", () => {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(refreshQuote, 200);
  });
  form.querySelectorAll("[name=method]").forEach((radio) =>
    radio.addEventListener("change", () => {
      $("card-pay").hidden = method() !== "card";
      $("crypto-pay").hidden = method() !== "crypto";
      refreshQuote();
    })
  );

  // --- cards ----------------------------------------------------------------------------------
  // Stripe.js allows one card element per Elements group: one group per form on the page.
  function cardElement(selector) {
    if (!stripe) return null;
    const element = stripe.elements().create("card");
    element.mount(selector);
    return element;
  }
  let buyCard = null;
  let hasCard = cfg.hasCard;
  if (!hasCard) buyCard = cardElement("#card-element");
  const useNew = $("use-new-card");
  if (useNew) {
    useNew.addEventListener("click", (event) => {
      event.preventDefault();
      $("card-element-box").hidden = false;
      if (!buyCard) buyCard = cardElement("#card-element");
      hasCard = false;
    });
  }

  async function saveCard(element) {
    if (!stripe) throw new Error("Stripe.js did not load; card payments are unavailable.");
    const setup = await post(cfg.setupUrl);
    const result = await stripe.confirmCardSetup(setup.client_secret, { payment_method: { card: element } });
    if (result.error) throw new Error(result.error.message || "The card could not be saved.");
    return post(cfg.confirmUrl, { setup_intent_id: result.setupIntent.id });
  }

  async function waitForCredits(purchaseId) {
    const url = cfg.statusUrl.replace("/0/", "/" + purchaseId + "/");
    for (let i = 0; i < 60; i++) {
      const response = await fetch(url, { credentials: "same-origin" });
      const body = await response.json().catch(() => ({}));
      if (body.status === "succeeded") {
        status("Payment received: $" + body.credits + " of credits added.");
        setTimeout(() => window.location.reload(), 800);
        return;
      }
      if (body.status === "failed" || body.status === "canceled") {
        status("The payment did not go through: " + (body.failure_reason || body.status), true);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    status("Still waiting for the payment processor; the purchase is listed as pending and is checked automatically.");
    setTimeout(() => window.location.reload(), 1500);
  }

  $("pay-card").addEventListener("click", async () => {
    const button = $("pay-card");
    button.disabled = true;
    try {
      // A bad amount is refused before anything reaches Stripe (no card is saved for a purchase that cannot start).
      const amountError = await refreshQuote();
      if (amountError) throw new Error(amountError);
      if (!hasCard) {
        status("Saving the card ...");
        await saveCard(buyCard);
        hasCard = true;
      }
      status("Charging the card ...");
      let payment = await post(cfg.purchaseUrl, { amount: $("amount").value });
      if (payment.client_secret) {
        status("Your bank asks you to confirm the payment ...");
        const result = await stripe.confirmCardPayment(payment.client_secret);
        if (result.error) throw new Error(result.error.message || "Authentication failed.");
      }
      status("Payment sent; waiting for confirmation ...");
      await waitForCredits(payment.id);
    } catch (error) {
      status(error.message, true);
    } finally {
      button.disabled = false;
    }
  });

  // --- save a card for auto top-up --------------------------------------------------------------
  let topupCard = null;
  $("save-card").addEventListener("click", () => {
    $("save-card-box").hidden = false;
    if (!topupCard) topupCard = cardElement("#save-card-element");
  });
  $("save-card-confirm").addEventListener("click", async () => {
    try {
      const card = await saveCard(topupCard);
      window.location.reload();
      return card;
    } catch (error) {
      alert(error.message);
    }
  });
})();
