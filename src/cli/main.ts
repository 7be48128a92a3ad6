/** The `moekit` command line: a thin layer over the library. Each command lives in its own file. */
import { Command, CommanderError } from 'commander';
import { MoekitError } from '../errors.js';
import { registerBench } from './bench.js';
import { registerCalibrate } from './calibrate.js';
import { registerConvert } from './convert.js';
import { registerEval } from './eval.js';
import { registerInfo } from './info.js';
import { registerInspect } from './inspect.js';
import { registerReport } from './report.js';
import { registerTrace } from './trace.js';
import { registerRun } from './run.js';
import { registerTrain } from './train.js';

export function buildProgram(): Command {
  const program = new Command('moekit')
    .description('Run, steer, inspect and convert Mixture-of-Experts language models')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  registerInfo(program);
  registerRun(program);
  registerConvert(program);
  registerTrace(program);
  registerInspect(program);
  registerReport(program);
  registerEval(program);
  registerCalibrate(program);
  registerBench(program);
  registerTrain(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      // commander already printed its message; a UsageError thrown by a flag parser arrives wrapped
      return 2;
    }
    if (e instanceof MoekitError) {
      process.stderr.write(`moekit: ${e.name}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
