// The same inference request as curl, Python, TypeScript and Go (the project's SDKs).
import type { InferenceRequest } from "bitnet-client";

export const LANGUAGES = ["curl", "Python", "TypeScript", "Go"] as const;
export type Language = (typeof LANGUAGES)[number];

export function snippet(lang: Language, origin: string, body: InferenceRequest): string {
  const json = JSON.stringify(body);
  switch (lang) {
    case "curl":
      return `curl -N ${origin}/v1/inference/stream \\\n  -H "Authorization: Bearer $BITNET_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${json.replace(/'/g, "'\\''")}'`;
    case "Python":
      return `import os\nfrom bitnet_client import BitNetClient\nfrom bitnet_client.models import InferenceRequest\n\nclient = BitNetClient("${origin}", token=os.environ["BITNET_API_KEY"])\nbody = InferenceRequest.from_dict(${pyLiteral(body)})\nwith client.stream_inference(body=body) as events:\n    for event in events:\n        if event.event == "token":\n            print(event.data.text, end="", flush=True)`;
    case "TypeScript":
      return `import { BitNetClient } from "bitnet-client";\n\nconst client = new BitNetClient({ baseUrl: "${origin}", token: process.env.BITNET_API_KEY });\nfor await (const e of client.streamInference(${JSON.stringify(body, null, 2)})) {\n  if (e.event === "token") process.stdout.write(e.data.text);\n}`;
    case "Go":
      return `c := bitnet.NewClient("${origin}", bitnet.WithToken(os.Getenv("BITNET_API_KEY")))\nvar req bitnet.InferenceRequest\n_ = json.Unmarshal([]byte(\`${json}\`), &req)\ns, err := c.StreamInference(ctx, req)\nif err != nil { log.Fatal(err) }\nfor e := range s.Events() {\n\tif e.Token != nil { fmt.Print(e.Token.Text) }\n}\nif err := s.Err(); err != nil { log.Fatal(err) }`;
  }
}

function pyLiteral(value: unknown): string {
  return JSON.stringify(value).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
}
