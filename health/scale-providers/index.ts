// The scale providers by the config's name.
import type { ScaleProviderConfig } from '../../config/scale.js'
import { CommandProvider } from './command.js'
import { ProcessProvider } from './process.js'
import type { ScaleProvider, ScaleProviderDeps } from './provider.js'
import { WebhookProvider } from './webhook.js'

export type { ScaleProvider, ScaleProviderDeps } from './provider.js'

export function createScaleProvider (config: ScaleProviderConfig, deps: ScaleProviderDeps): ScaleProvider {
  switch (config.kind) {
    case 'process': return new ProcessProvider(config, deps)
    case 'command': return new CommandProvider(config, deps)
    case 'webhook': return new WebhookProvider(config, deps)
  }
}
