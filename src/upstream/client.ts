// The composed call every handler uses to reach a service. The build order is
// written out here, once: balance across instances → call the instance's pool.

import type { ServiceConfig } from '../config/types.js'
import { createInstancePool, type InstancePool } from './pool.js'
import { roundRobin } from './balancer.js'
import type { UpstreamCall } from './types.js'

export interface ServiceClient {
  name: string
  /** Default timeout for calls to this service (ms). */
  timeout: number
  call: UpstreamCall
  close: () => Promise<void>
}

export function createServiceClient (service: ServiceConfig): ServiceClient {
  const instances: InstancePool[] = service.urls.map(url => createInstancePool(service.name, url))
  return {
    name: service.name,
    timeout: service.timeout,
    call: roundRobin(instances.map(i => i.call)),
    close: async () => { await Promise.all(instances.map(i => i.close())) },
  }
}
