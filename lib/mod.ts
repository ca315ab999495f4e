// lifeboat's public surface: the one import for recipes and tasks.
//
//   import { recipe, step, packArchive, s3Sync, … } from "../lib/mod.ts";

export { ExitCode, LifeboatError, UsageError, VerifyError, LockedError, RefusedError, InterruptedError } from "./errors.ts";

export { formatBytes, formatDuration } from "./log.ts";
export { expandHome, type SettingSpec, type SettingSpecs, type SettingValues } from "./settings.ts";
export { useContext, type Context } from "./context.ts";
export { withoutCredentials } from "./secrets.ts";
export { exec, probe, which, shellQuote, shellJoin, ExecError, type ExecOptions, type ExecResult, type StdinSpec, type StdoutSpec, type StdoutFile } from "./exec.ts";

export { step, fanOut, FanOutFailed, type Step, type StepApi, type StepOptions, type FanOutOptions, type StepOutcome } from "./steps.ts";
export { main, recipe, type MainDefinition, type MainResult, type RecipeDefinition, type Plan, type PriorRun } from "./recipe.ts";
export { captureToFile, clearStaging, flushBehind, partialFile, type CaptureOptions, type FlushBehind, type FlushBehindOptions, type PartialFile } from "./files.ts";

export {
  packArchive,
  verifyArchive,
  unpackArchive,
  ensureBackupFolder,
  readAgeIdentities,
  ageOptions,
  AGE_SETTINGS,
  COMPRESSION_SETTINGS,
  compressionSettings,
  compressionOptions,
  archiveName,
  type Compression,
  type Manifest,
  type ManifestEntry,
  type ArchiveInfo,
  type AgeOptions,
  type PackOptions,
  type VerifyOptions,
  type UnpackOptions,
  type VerifyReport,
} from "./archive.ts";
export {
  listBackups,
  backupArchive,
  planPrune,
  prune,
  diskSpace,
  checkFreeSpace,
  type FreeSpaceOptions,
  stamp,
  type BackupEntry,
  type BackupArchiveOptions,
  type BackupResult,
  type PrunePolicy,
  type PrunePlan,
  type PruneOptions,
} from "./backups.ts";
export { task, type Task } from "./recipe.ts";
export {
  installSchedule,
  removeSchedule,
  listSchedules,
  typeScriptFlags,
  type ScheduleSpec,
  type ScheduleEntry,
  type InstallScheduleOptions,
  type InstalledSchedule,
} from "./schedule.ts";
export { backupStatus, writeTextfile, type BackupRecord, type StatusOptions, type RecipeStatus, type TextfileOptions } from "./monitor.ts";

export { ldifEntries } from "./ldap.ts";
export { compareTrees, type CompareOptions } from "./compare.ts";
export { ssh, sshTar, sshUntar, sshDiskUsage, sshCommand, sshWhere, type SshTarget, type SshOptions, type SshTarOptions, type SshTarResult, type SshUntarOptions } from "./ssh.ts";
export { waitForHealthy, type HealthProbe, type HttpProbe, type TcpProbe, type CommandProbe, type WaitOptions, type WaitResult } from "./health.ts";
export { httpJson, HttpError, type HttpJsonOptions, type BasicAuth } from "./http.ts";
export { limit, mapLimit, failures, type Limit, type Settled, type MapLimitOptions } from "./limit.ts";
export { retry, type RetryOptions } from "./retry.ts";
export { searchRegisterRepository, searchSnapshot, searchCheckSnapshot, searchGetSnapshot, searchListSnapshots, searchLatestSnapshot, searchDeleteSnapshots, searchRestore, searchHealth, searchHealthProbe, type SearchOptions, type SearchRepositoryOptions, type SearchSnapshotOptions, type SearchSnapshotInfo, type SearchLatestOptions, type SearchDeleteOptions, type SearchDeleteResult, type SearchRestoreOptions, type SearchRestoreResult, type SearchHealth, type SearchProbeOptions } from "./search.ts";
export {
  s3Client,
  s3BucketExists,
  s3MakeBucket,
  s3RemoveBucket,
  s3List,
  s3Sync,
  parseS3Url,
  S3Error,
  S3_INDEX_NAME,
  S3_ESCAPED_DIR,
  type S3Options,
  type S3Handle,
  type S3Object,
  type S3BucketOptions,
  type S3RemoveBucketOptions,
  type S3SyncOptions,
  type S3SyncReport,
  type S3IndexEntry,
} from "./s3.ts";
// node:path (the module zx exports as path), and zx's .env reader, for platforms configured by one (Hoss's ~/.hoss/.env): dotenv.loadSafe(file) → { KEY: value }, {} when missing.
export { default as path } from "node:path";
export { dotenv } from "./dotenv.ts";
export {
  dockerExec,
  dockerCli,
  dockerCp,
  containerState,
  containerExists,
  dockerRm,
  type DockerExecOptions,
  type DockerCpOptions,
  type CpSide,
  type ContainerStatus,
  type ContainerOptions,
  type DockerRmOptions,
} from "./docker.ts";
export {
  pgDumpAll,
  pgDump,
  psqlFile,
  pgRestore,
  psqlQuery,
  pgReady,
  pgLoadDumpAll,
  type PgLoadDumpAllOptions,
  type PgWhere,
  type PgLocal,
  type PgContainer,
  type PgSsh,
  type PgConnection,
  type PgDumpOutputOptions,
  type PgDumpAllOptions,
  type PgDumpOptions,
  type DumpResult,
  type PsqlFileOptions,
  type PgRestoreOptions,
  type PsqlQueryOptions,
  type LoadResult,
} from "./postgres.ts";
export { OFFSITE_SETTINGS, offsiteSettings, offsiteOptions, parseOffsite, isOffsiteUrl, offsiteCopy, offsiteVerify, offsiteList, offsitePrune, offsiteFetch, offsiteBackup, type OffsiteOptions, type OffsiteBackupOptions, type OffsiteBackupResult, type OffsiteDest, type OffsiteCopyResult, type OffsiteVerifyResult, type OffsitePruneOptions, type OffsiteFetchOptions } from "./offsite.ts";
export { readInventory, loadInventory, parseInventory, inventoryFile, groupHosts, groupHostNames, inventoryHost, sshTargetOf, type Inventory, type InventoryGroup, type InventoryHost, type ReadInventoryOptions } from "./inventory.ts";
export { sshFetch, sshPut, sshGet, sshList, sshListFiles, sshFreeSpace, sshUsage, sshTunnel, sshPush, sshClear, type SshFetchOptions, type SshCopyOptions, type SshTunnel, type SshTunnelOptions, type SshPushOptions } from "./remote.ts";
export { sha1File, writeSha1File, checkSha1File, hashFileOffThread, type FileDigest } from "./checksum.ts";
export { readJsonFile, type ReadJsonFileOptions } from "./jsonfile.ts";
export { verifyZip, type ZipReport, type ZipEntryInfo, type VerifyZipOptions } from "./zip.ts";
export { receiveRangedPuts, serveRanged, type ReceiveOptions, type ReceiveResult, type ServeOptions } from "./ranged.ts";
export { chainShip, chainRunName, chainWanted, chainAssemble, chainPrune, chainRuns, listNames, chainPush, chainFetch, chainPruneOffsite, chainOffsiteRuns, type ChainRun, type ChainFile, type ChainShipOptions, type ChainPruneOptions, type ChainOffsiteOptions } from "./filechain.ts";
export { offsiteRemove } from "./offsite.ts";
export { xenonBackup, xenonRestore, xenonHostInfo, xenonCounts, toMicros, XENON_BACKUP_KIND, XENON_RESTORE_KIND, type XenonOptions, type XenonBackupRequest, type XenonRestoreRequest } from "./xenon.ts";
export { afsListVolumes, afsListVldb, afsVolumeIds, afsBackupSys, afsBackup, afsWaitWhileBusy, isVolumeBusy, describeTransaction, afsExamine, afsDump, afsRestore, afsRename, afsRemove, afsZap, afsTransactions, afsEndTransaction, afsDumpToFile, afsRestoreFile, checkVolumeName, restoredName, AFS_MAX_NAME, type AfsCell, type AfsVolume, type AfsVldbEntry, type AfsTransaction, type ListVolumesOptions, type AfsDumpOptions, type AfsRestoreOptions, type BackupSysOptions, type BusyWaitOptions } from "./afs.ts";
export { sealToFile, sealTreeToFile, unsealTreeTo, verifySealed, unsealTo, sealSuffix, fileSha256, writeJsonFile, type Seal, type SealResult, type SealOptions, type UnsealOptions } from "./sealed.ts";
export { mirrorPut, mirrorList, mirrorRead, mirrorGet, mirrorRemove, mirrorFree, type MirrorFile, type MirrorPutResult, type MirrorRemoveOptions } from "./mirror.ts";
export { mariadbDump, mariadbDumpUsers, mariadbLoad, mariadbQuery, mariadbDatabases, mariadbIdent, describeMariaDb, MARIADB_SYSTEM_DATABASES, type MariaDbServer, type MariaDbOptions, type MariaDbResult } from "./mariadb.ts";
