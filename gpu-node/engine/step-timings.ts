/** Where an engine's steps spend their time, cumulative since it started (EngineStats reports them). */
export class StepTimings {
  steps = 0;
  /** Whole steps, schedule to emit. */
  stepMs = 0;
  /** Forward passes as the step loop waits for them, and the part of them inside onnxruntime's session.run. */
  forwardMs = 0;
  sessionRunMs = 0;
  /** Bias, penalties, constraints, ranking and drawing (the largest engine cost outside session.run). */
  samplerMs = 0;
  generatedTokens = 0;

  /** A forward pass that began at `started` (performance.now()) and spent `sessionRunMs` in session.run. */
  forwardDone(started: number, sessionRunMs: number): void {
    this.forwardMs += performance.now() - started;
    this.sessionRunMs += sessionRunMs;
  }

  samplingDone(started: number): void {
    this.samplerMs += performance.now() - started;
  }

  stepDone(started: number): void {
    this.steps++;
    this.stepMs += performance.now() - started;
  }
}
