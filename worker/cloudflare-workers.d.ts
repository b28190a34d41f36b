// The slice of workerd's "cloudflare:workers" module this code uses (the full workers-types would
// clash with @types/node's globals in this shared tsconfig).
declare module "cloudflare:workers" {
  export abstract class DurableObject<Env = unknown> {
    protected ctx: unknown;
    protected env: Env;
    constructor(ctx: unknown, env: Env);
  }
}
