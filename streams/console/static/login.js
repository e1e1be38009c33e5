// Sign-in: POST the credentials as JSON; the worker sets an HttpOnly session cookie and the console opens.
"use strict";
document.querySelector("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
    body: JSON.stringify({ user: form.get("user"), password: form.get("password") }),
  });
  if (response.ok) {
    window.location.assign("/");
    return;
  }
  const body = await response.json().catch(() => ({}));
  document.querySelector("#login-error").textContent = body.error || response.statusText;
});
