// Passkeys (WebAuthn): the browser's half of registering one (navigator.credentials.create) and of the second step of
// signing in with one (navigator.credentials.get). Each form with data-passkey asks its data-options address for the
// options (a POST with the CSRF token in its header; the server keeps the challenge), runs the ceremony, puts the
// answer as JSON in the form's hidden "credential" field and submits the form: the server's answer is a page, as for
// every form. Without JavaScript the start button stays hidden and the note saying it needs JavaScript stays shown.
(function () {
  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, function (c) { return c.charCodeAt(0); });
  }
  function toText(buffer) {
    var binary = String.fromCharCode.apply(null, new Uint8Array(buffer));
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function descriptors(list) {
    return (list || []).map(function (item) { return Object.assign({}, item, {id: toBytes(item.id)}); });
  }
  function publicKey(options, kind) {
    var key = Object.assign({}, options, {challenge: toBytes(options.challenge)});
    if (kind === "register") {
      key.user = Object.assign({}, options.user, {id: toBytes(options.user.id)});
      key.excludeCredentials = descriptors(options.excludeCredentials);
    } else {
      key.allowCredentials = descriptors(options.allowCredentials);
    }
    return key;
  }
  function answer(credential) {
    var response = credential.response, json = {
      id: credential.id, rawId: toText(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: {clientDataJSON: toText(response.clientDataJSON)}
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      if (response.userHandle) json.response.userHandle = toText(response.userHandle);
    }
    return JSON.stringify(json);
  }
  function reveal(root) {
    if (!window.PublicKeyCredential) return;  // a browser without WebAuthn keeps the note
    root.querySelectorAll("form[data-passkey]").forEach(function (form) {
      form.querySelectorAll("[data-passkey-needs-script]").forEach(function (note) { note.hidden = true; });
      form.querySelectorAll("[data-passkey-start][hidden]").forEach(function (button) { button.hidden = false; });
    });
  }
  function start(form, button) {
    var kind = form.dataset.passkey, status = form.querySelector("[data-passkey-status]");
    var token = form.querySelector("input[name=csrf_token]").value;
    if (kind === "register" && !form.reportValidity()) return;
    button.disabled = true;
    status.textContent = "Waiting for your passkey…";
    fetch(form.dataset.options, {method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": token}})
      .then(function (reply) {
        return reply.json().then(function (body) {
          if (!reply.ok) throw new Error(body.error ? body.error.message : "The server refused: " + reply.status);
          return body;
        });
      })
      .then(function (options) {
        var key = publicKey(options, kind);
        return kind === "register" ? navigator.credentials.create({publicKey: key})
                                   : navigator.credentials.get({publicKey: key});
      })
      .then(function (credential) {
        form.querySelector("input[name=credential]").value = answer(credential);
        form.submit();  // a plain post, not htmx's: the answer is a new page
      })
      .catch(function (error) {
        button.disabled = false;
        status.textContent = error.name === "NotAllowedError"
          ? "The passkey request was cancelled or timed out. Try again."
          : "That did not work: " + error.message;
      });
  }
  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  document.addEventListener("htmx:load", function (event) { reveal(event.detail.elt); });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-passkey-start]");
    if (button) start(button.closest("form[data-passkey]"), button);
  });
  // Enter in the name field submits the form: run the ceremony instead of posting a form with no answer. Caught on
  // the way down, before htmx's boost (on the form itself) sends it.
  window.addEventListener("submit", function (event) {
    var form = event.target, button = form.querySelector && form.querySelector("[data-passkey-start]");
    if (!form.matches("form[data-passkey]") || !button || button.hidden) return;
    event.preventDefault();
    event.stopPropagation();
    if (!button.disabled) start(form, button);
  }, true);
})();
