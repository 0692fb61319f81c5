// The API's interactive documentation: Swagger UI, vendored, on the served OpenAPI document.
window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
