// Starts Swagger UI on the element that names the OpenAPI document (a file, not inline: the CSP forbids that).
window.addEventListener("load", () => {
  const element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({ url: element.dataset.spec, dom_id: "#swagger-ui", deepLinking: true });
});
