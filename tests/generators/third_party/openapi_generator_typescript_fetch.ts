// openapi-generator's typescript-fetch client (default options) against a live server.
// argv: base URL, email, password, model id. Prints one JSON line per step.
import { AuthApi, Configuration, InferenceApi, ModelsApi, ResponseError } from "./client/index";

async function main(url: string, email: string, password: string, model: string): Promise<void> {
  const tokens = await new AuthApi(new Configuration({ basePath: url + "/v1" })).login({
    loginRequest: { email, password },
  });
  console.log(JSON.stringify({ step: "login", token_type: tokens.tokenType }));
  const config = new Configuration({ basePath: url + "/v1", accessToken: tokens.accessToken });
  const me = await new AuthApi(config).getCurrentUser();
  console.log(JSON.stringify({ step: "me", email: me.email }));
  const body = await new InferenceApi(config).streamInference({
    inferenceRequest: { model, prompt: "Hello", maxTokens: 4 },
  });
  console.log(JSON.stringify({ step: "stream", body }));
  try {
    await new ModelsApi(config).getModel({ modelId: "mdl_00000000000000000000000000" });
  } catch (error) {
    if (!(error instanceof ResponseError)) throw error;
    console.log(JSON.stringify({ step: "not_found", status: error.response.status }));
  }
}

const [url, email, password, model] = process.argv.slice(2);
main(url, email, password, model).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
