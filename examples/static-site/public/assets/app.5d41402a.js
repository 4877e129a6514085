// Fingerprinted name: served with a year of immutable caching; app.5d41402a.js.gz beside
// it is what clients that accept gzip get.
fetch("/api/hello")
  .then((response) => response.json())
  .then((body) => { document.getElementById("message").textContent = body.message; });
