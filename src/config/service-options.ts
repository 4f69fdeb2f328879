// The settings a service's breaker and balancer take, as config carries them.
// They live with the config types (and upstream/ imports them from here) so the
// config layer never has to import the upstream code it configures.

export interface BreakerOptions {
  errorThresholdPercentage: number
  volumeThreshold: number
  resetTimeout: number
  rollingCountTimeout: number
}

export interface PassiveHealthOptions {
  failures: number
  ejectFor: number
}

export interface ActiveHealthOptions {
  path: string
  interval: number
  timeout: number
}
