/** GET /v1/models and /v1/models/{id}: the one served model, as OpenAI's list and model objects. */
import { Hono } from "hono";
import type { ModelList, ModelObject } from "../../shared/openai-types.ts";
import type { AppEnv } from "../app-env.ts";
import { notFound } from "../error-response.ts";

/** Phi-4's public release (2024-12-12), as the model's `created`. */
const PHI4_RELEASED = 1733961600;

function servedModel(id: string): ModelObject {
  return { id, object: "model", created: PHI4_RELEASED, owned_by: "microsoft" };
}

export const modelRoutes = new Hono<AppEnv>()
  .get("/models", (c) => {
    const list: ModelList = { object: "list", data: [servedModel(c.get("config").modelId)] };
    return c.json(list);
  })
  // The served id has a slash ("microsoft/phi-4"): the parameter takes the rest of the path.
  .get("/models/:id{.+}", (c) => {
    const id = c.req.param("id");
    const served = c.get("config").modelId;
    if (id !== served) throw notFound(`The model '${id.slice(0, 200)}' does not exist.`, "model_not_found", "model");
    return c.json(servedModel(served));
  });
