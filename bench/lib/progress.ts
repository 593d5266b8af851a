import { formatDuration } from "./format.ts";

/**
 * One progress line on stderr: a bar over the scenarios of this run, the step running now and the
 * time spent. On a terminal the line is redrawn in place; otherwise every step is its own line.
 */
export class Progress {
  private readonly started = Date.now();
  private scenarioIndex = 0;
  private scenarioName = "";
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly total: number;

  constructor(total: number) {
    this.total = total;
  }

  scenario(name: string): void {
    this.scenarioIndex++;
    this.scenarioName = name;
    this.step("starting");
  }

  step(text: string): void {
    const width = 20;
    const done = Math.min(width, Math.round(((this.scenarioIndex - 1) / this.total) * width));
    const bar = `${"#".repeat(done)}${"-".repeat(width - done)}`;
    const line = `[${bar}] ${this.scenarioIndex}/${this.total} ${this.scenarioName}: ${text} (${formatDuration(Date.now() - this.started)})`;
    if (this.tty)
      process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
    else process.stderr.write(`${line}\n`);
  }

  note(text: string): void {
    if (this.tty) process.stderr.write("\r\x1b[2K");
    process.stderr.write(`${text}\n`);
  }

  done(): void {
    if (this.tty) process.stderr.write("\r\x1b[2K");
    process.stderr.write(`done in ${formatDuration(Date.now() - this.started)}\n`);
  }
}
