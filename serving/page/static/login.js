"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const box = document.getElementById("login-error");
  const token = document.getElementById("token").value;
  box.hidden = true;
  if (!token) { box.textContent = "Enter the API token."; box.hidden = false; return; }
  const answer = await fetch("/ui/login", {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify({token}),
    credentials: "same-origin",
  });
  if (answer.ok) { window.location.assign("/ui/"); return; }
  const body = await answer.json().catch(() => ({}));
  box.textContent = answer.status === 401 ? "That is not this service's token." : (body.error || "Sign-in failed.");
  box.hidden = false;
});
