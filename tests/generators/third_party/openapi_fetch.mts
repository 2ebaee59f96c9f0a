// openapi-typescript types + openapi-fetch against a live server.
// argv: base URL, email, password, model id. Prints one JSON line per step.
import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

const [url, email, password, model] = process.argv.slice(2);
const anonymous = createClient<paths>({ baseUrl: url + "/v1" });
const login = await anonymous.POST("/auth/login", { body: { email, password } });
if (login.data === undefined) throw new Error(JSON.stringify(login.error));
console.log(JSON.stringify({ step: "login", token_type: login.data.token_type }));
const client = createClient<paths>({
  baseUrl: url + "/v1",
  headers: { Authorization: `Bearer ${login.data.access_token}` },
});
const me = await client.GET("/auth/me");
if (me.data === undefined) throw new Error(JSON.stringify(me.error));
console.log(JSON.stringify({ step: "me", email: me.data.email }));
const stream = await client.POST("/inference/stream", {
  body: { model, prompt: "Hello", max_tokens: 4 },
  parseAs: "text",
});
console.log(JSON.stringify({ step: "stream", body: stream.data }));
const missing = await client.GET("/models/{model_id}", {
  params: { path: { model_id: "mdl_00000000000000000000000000" } },
});
console.log(JSON.stringify({ step: "not_found", status: missing.response.status, title: missing.error?.title }));
