// Framework internals: what the task runner, drills, tests and benchmarks need beside the
// recipe-author surface (lib/mod.ts, re-exported here). Recipes import lib/mod.ts only.
export * from "./mod.ts";
export { exitCodeOf } from "./errors.ts";
export { Secrets } from "./secrets.ts";
export { Logger, type LogSink, type Spinner, type Progress } from "./log.ts";
export { GLOBAL_SETTINGS, ANY_SITE_KEYS, envName, helpText, parseSettings } from "./settings.ts";
export { createContext, scriptArgs, withContext, setDefaultContext, throwIfAborted, type ContextOptions } from "./context.ts";
export { displayCommand, killRunning } from "./exec.ts";
export { acquireLock, pidAlive, type Lock, type LockOptions } from "./lock.ts";
export { runSteps, readJournal, printOutcomes, StepFailed } from "./steps.ts";
export { targetKey } from "./recipe.ts";
export { partialPath, fsyncPath, diskFull } from "./files.ts";
export { createParallelGzip, type ParallelGzipOptions } from "./compress.ts";
export { cleanLeftovers, removeArchive, MANIFEST_NAME } from "./archive.ts";
export { systemdUnits, cronFile, cronSchedule, scheduleCommand, systemdQuote, systemdRunning, checkScheduleName, parseTimespan, unitNames, lifeboatRepo, nodeBinary, typeScriptFlags, UNIT_DIR, CRON_DIR, type CronOptions } from "./schedule.ts";
export { folderRecords, recordOf, recipeOfName, metricsText, parseAge, formatAge } from "./monitor.ts";
export { runFailureHook, notifyFailure, runSummary, summaryText, summaryEnv, noteTarget, type RunSummary, type FailureHookOptions } from "./notify.ts";
export { describeProbe } from "./health.ts";
export { backoffDelay } from "./retry.ts";
export { readS3Index } from "./s3.ts";
export { parseCpArg, checkContainerName } from "./docker.ts";
export { describeWhere } from "./postgres.ts";
export { parseVolumes, vosCommand, vos } from "./afs.ts";
