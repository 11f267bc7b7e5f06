// Ours, not vendored: starts Swagger UI on /openapi.json. A file, not an inline script, so the
// page's Content-Security-Policy needs no 'unsafe-inline' for scripts.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // the default would send the spec to validator.swagger.io
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
